import Foundation

/// The JSON header of a `.qst4` file and its fixed 64-byte preamble (Formats/QST4.md).
public enum QST4 {
    public static let magic: [UInt8] = [0x51, 0x53, 0x54, 0x34, 0x0D, 0x0A, 0x1A, 0x0A]
    public static let majorVersion: UInt16 = 1
    public static let minorVersion: UInt16 = 0
    public static let preambleSize = 64
    public static let partAlignment = 64
    public static let maxHeaderLength = 100 << 20
}

public struct ByteRange: Codable, Sendable, Equatable {
    public var offset: Int
    public var length: Int
    public init(offset: Int, length: Int) { self.offset = offset; self.length = length }
}

public struct QST4Quantization: Codable, Sendable, Equatable {
    public var method: String = "nf4"
    public var blockSize: Int
    public var doubleQuant: Bool
    public var dqBlockSize: Int
    public var keptDtype: String
    public var policy: String = "transformer-linear"
    public var keep: [String] = []
    /// Set when block scales were searched (Formats/QST4.md §4): "mse", or "weighted-mse" with `calibration`.
    public var scaleSearch: String?
    public var calibration: QST4CalibrationInfo?
    enum CodingKeys: String, CodingKey {
        case method, policy, keep, calibration
        case scaleSearch = "scale_search"
        case blockSize = "block_size", doubleQuant = "double_quant", dqBlockSize = "dq_block_size", keptDtype =
            "kept_dtype"
    }
    public init(blockSize: Int, doubleQuant: Bool, dqBlockSize: Int, keptDtype: String, keep: [String]) {
        self.blockSize = blockSize; self.doubleQuant = doubleQuant; self.dqBlockSize = dqBlockSize
        self.keptDtype = keptDtype; self.keep = keep
    }
}

/// Which text calibrated the scale search (informative; decoding does not depend on it).
public struct QST4CalibrationInfo: Codable, Sendable, Equatable {
    public var sha256: String
    public var tokens: Int
    public var ctx: Int
    public init(sha256: String, tokens: Int, ctx: Int) { self.sha256 = sha256; self.tokens = tokens; self.ctx = ctx }
}

public struct QST4Source: Codable, Sendable, Equatable {
    public var path: String
    public var bytes: Int
    public var sha256: String
    public init(path: String, bytes: Int, sha256: String) { self.path = path; self.bytes = bytes; self.sha256 = sha256 }
}

public struct QST4Provenance: Codable, Sendable, Equatable {
    public var sources: [QST4Source]
    public init(sources: [QST4Source]) { self.sources = sources }
}

public struct QST4File: Codable, Sendable, Equatable {
    public var name: String
    public var offset: Int
    public var length: Int
    public var rawLength: Int
    public var compression: String
    public var sha256: String
    enum CodingKeys: String, CodingKey { case name, offset, length, compression, sha256, rawLength = "raw_length" }
}

public struct QST4Layer: Codable, Sendable, Equatable {
    public var index: Int
    public var offset: Int
    public var length: Int
}

public struct QST4TensorEntry: Codable, Sendable, Equatable {
    public var name: String
    public var dtype: DType
    public var shape: [Int]
    public var layer: Int
    public var crc32c: UInt32
    public var parts: [String: ByteRange]
    public var blockSize: Int?
    public var doubleQuant: Bool?
    public var dqBlockSize: Int?
    public var dqOffsetBits: UInt32?
    /// NF4 only, optional: how the block scales were chosen ("mse" or "weighted-mse"; absent = absmax) and, when
    /// weighted, the SHA-256 of the calibration text. Decoders ignore both.
    public var scaleSearch: String?
    public var calibrationSHA256: String?
    enum CodingKeys: String, CodingKey {
        case name, dtype, shape, layer, crc32c, parts
        case scaleSearch = "scale_search", calibrationSHA256 = "calibration_sha256"
        case blockSize = "block_size", doubleQuant = "double_quant", dqBlockSize = "dq_block_size"
        case dqOffsetBits = "dq_offset_bits"
    }

    /// Parts in checksum order (Formats/QST4.md §4).
    public var orderedPartNames: [String] {
        switch dtype {
        case .nf4: return (doubleQuant ?? false) ? ["codes", "absmax_codes", "absmax2"] : ["codes", "absmax"]
        default: return ["data"]
        }
    }

    public var elementCount: Int { shape.reduce(1, *) }
}

public struct QST4Header: Codable, Sendable, Equatable {
    public var format: String = "qst4"
    public var createdBy: String
    public var createdAt: String
    public var quantization: QST4Quantization?
    public var provenance: QST4Provenance
    public var files: [QST4File]
    public var layers: [QST4Layer]
    public var tensors: [QST4TensorEntry]
    public var sections: [String: JSONAny]
    enum CodingKeys: String, CodingKey {
        case format, quantization, provenance, files, layers, tensors, sections
        case createdBy = "created_by", createdAt = "created_at"
    }
}

/// Any JSON value, so optional sections round-trip without being understood.
public enum JSONAny: Codable, Sendable, Equatable {
    case null, bool(Bool), number(Double), string(String), array([JSONAny]), object([String: JSONAny])

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() {
            self = .null
        } else if let b = try? c.decode(Bool.self) {
            self = .bool(b)
        } else if let n = try? c.decode(Double.self) {
            self = .number(n)
        } else if let s = try? c.decode(String.self) {
            self = .string(s)
        } else if let a = try? c.decode([JSONAny].self) {
            self = .array(a)
        } else {
            self = .object(try c.decode([String: JSONAny].self))
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .number(let n): try c.encode(n)
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }
}
