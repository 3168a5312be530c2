import Foundation

/// A memory-mapped `.qst4` file. Opening validates the preamble, the header and the
/// whole tensor directory (Formats/QST4.md §6) without touching tensor data.
public final class QST4Container: @unchecked Sendable {
    public let path: String
    public let file: MappedFile
    public let header: QST4Header
    public let alignment: Int
    public let dataOffset: Int
    public let headerOffset: Int
    public let minorVersion: Int
    private let index: [String: Int]

    public init(path: String) throws {
        self.path = path
        file = try MappedFile(path: path)
        let bytes = file.bytes
        guard bytes.count >= QST4.preambleSize else {
            throw QSTError.file(path, "too short for a .qst4 preamble (\(bytes.count) bytes)", kind: .notQST4)
        }
        guard Array(bytes[0..<8]) == QST4.magic else {
            throw QSTError.file(path, "not a .qst4 file (bad magic)", kind: .notQST4)
        }
        func u16(_ o: Int) -> Int { Int(bytes.loadUnaligned(fromByteOffset: o, as: UInt16.self).littleEndian) }
        func u32(_ o: Int) -> UInt32 { bytes.loadUnaligned(fromByteOffset: o, as: UInt32.self).littleEndian }
        func u64(_ o: Int) -> UInt64 { bytes.loadUnaligned(fromByteOffset: o, as: UInt64.self).littleEndian }
        let major = u16(8)
        guard major == Int(QST4.majorVersion) else {
            throw QSTError.file(
                path,
                "format version \(major).\(u16(10)) is not supported (this reader reads version \(QST4.majorVersion).x); upgrade qst",
                kind: .unsupportedVersion)
        }
        minorVersion = u16(10)
        alignment = Int(u32(12))
        guard alignment >= 4096, alignment & (alignment - 1) == 0 else {
            throw QSTError.file(
                path, "preamble: alignment \(alignment) is not a power of two >= 4096", kind: .invalidPreamble)
        }
        let dOff = u64(16), hOff = u64(24), hLen = u64(32)
        guard hLen <= UInt64(QST4.maxHeaderLength) else {
            throw QSTError.file(path, "preamble: header length \(hLen) exceeds 100 MiB", kind: .invalidPreamble)
        }
        guard hOff <= UInt64(bytes.count), hOff + hLen == UInt64(bytes.count) else {
            throw QSTError.file(
                path,
                "preamble: header range \(hOff)+\(hLen) does not end at the end of the file (\(bytes.count) bytes); truncated or corrupt",
                kind: .invalidPreamble)
        }
        guard dOff % UInt64(alignment) == 0, dOff >= UInt64(QST4.preambleSize), dOff <= hOff else {
            throw QSTError.file(
                path, "preamble: data offset \(dOff) is not aligned or lies after the header", kind: .invalidPreamble)
        }
        dataOffset = Int(dOff)
        headerOffset = Int(hOff)
        let headerBytes = UnsafeRawBufferPointer(rebasing: bytes[Int(hOff)..<Int(hOff + hLen)])
        guard Checksums.crc32c(headerBytes) == u32(40) else {
            throw QSTError.file(path, "header checksum mismatch; the file is corrupt", kind: .checksumMismatch)
        }
        let decoded: QST4Header
        do {
            decoded = try JSONDecoder().decode(QST4Header.self, from: Data(headerBytes))
        } catch {
            throw QST4Container.diagnose(Data(headerBytes), path: path)
                ?? QSTError.file(
                    path, "header is not a valid .qst4 JSON header: \(QST4Container.describe(error))",
                    kind: .invalidHeader)
        }
        guard decoded.format == "qst4" else {
            throw QSTError.file(path, "header: format is '\(decoded.format)', expected 'qst4'", kind: .invalidHeader)
        }
        header = decoded
        var idx: [String: Int] = [:]
        for (i, t) in decoded.tensors.enumerated() {
            guard idx[t.name] == nil else {
                throw QSTError.tensor(path, t.name, "listed twice in the directory", kind: .duplicateTensor)
            }
            idx[t.name] = i
        }
        index = idx
        try QST4Validation.validate(
            header: decoded, path: path, dataRange: dataOffset..<headerOffset, alignment: alignment)
    }

    /// A more precise message than the decoder's for the common defects: names the tensor.
    static func diagnose(_ json: Data, path: String) -> QSTError? {
        guard let obj = try? JSONSerialization.jsonObject(with: json) else {
            return QSTError.file(path, "header is not JSON", kind: .invalidJSON)
        }
        guard let top = obj as? [String: Any] else {
            return QSTError.file(path, "header is not a JSON object", kind: .invalidHeader)
        }
        guard let tensors = top["tensors"] as? [Any] else {
            return QSTError.file(path, "header: missing field 'tensors'", kind: .invalidHeader)
        }
        for (i, t) in tensors.enumerated() {
            guard let t = t as? [String: Any] else {
                return QSTError.file(path, "header: tensors[\(i)] is not an object", kind: .invalidTensorInfo)
            }
            let name = t["name"] as? String ?? "#\(i)"
            for field in ["name", "dtype", "shape", "layer", "crc32c", "parts"] where t[field] == nil {
                return QSTError.tensor(path, name, "missing field '\(field)'", kind: .invalidTensorInfo)
            }
            if let d = t["dtype"] as? String, DType(rawValue: d) == nil {
                return QSTError.tensor(path, name, "unknown dtype '\(d)'", kind: .invalidTensorInfo)
            }
            if let shape = t["shape"] as? [Any], !shape.allSatisfy({ ($0 as? Int) != nil }) {
                return QSTError.tensor(path, name, "shape \(shape) is not a list of integers", kind: .invalidTensorInfo)
            }
        }
        return nil
    }

    static func describe(_ error: Error) -> String {
        if case DecodingError.keyNotFound(let key, let ctx) = error {
            return "missing field '\(key.stringValue)' at \(ctx.codingPath.map(\.stringValue).joined(separator: "."))"
        }
        if case DecodingError.typeMismatch(_, let ctx) = error {
            return "wrong type at \(ctx.codingPath.map(\.stringValue).joined(separator: "."))"
        }
        if case DecodingError.dataCorrupted(let ctx) = error {
            let at = ctx.codingPath.map(\.stringValue).joined(separator: ".")
            return at.isEmpty ? "not JSON" : "bad value at \(at)"
        }
        return "\(error)"
    }

    public var tensorNames: [String] { header.tensors.map(\.name) }

    public func entry(_ name: String) throws -> QST4TensorEntry {
        guard let i = index[name] else { throw QSTError.tensor(path, name, "not in this container") }
        return header.tensors[i]
    }

    public func contains(_ name: String) -> Bool { index[name] != nil }

    public func pointer(_ range: ByteRange) -> UnsafeRawPointer { file.base + range.offset }

    /// An embedded file's bytes, decompressed; nil if the container does not hold it.
    public func embeddedFile(_ name: String) throws -> Data? {
        guard let f = header.files.first(where: { $0.name == name }) else { return nil }
        let raw = UnsafeRawBufferPointer(start: file.base + f.offset, count: f.length)
        switch f.compression {
        case "zstd": return try Zstd.decompress(raw, expectedSize: f.rawLength, what: "\(path): file '\(name)'")
        case "none": return Data(raw)
        default: throw QSTError.file(path, "file '\(name)': unknown compression '\(f.compression)'")
        }
    }

    /// Per-block float32 absmax of an NF4 tensor, decoding double quantization.
    public func absmax(_ e: QST4TensorEntry) -> [Float] {
        let blocks = (e.elementCount + e.blockSize! - 1) / e.blockSize!
        var out = [Float](repeating: 0, count: blocks)
        if e.doubleQuant == true {
            let codes = pointer(e.parts["absmax_codes"]!).assumingMemoryBound(to: UInt8.self)
            let a2 = pointer(e.parts["absmax2"]!).assumingMemoryBound(to: Float.self)
            out.withUnsafeMutableBufferPointer {
                NF4.decodeAbsmax(
                    codes: codes, absmax2: a2, offset: Float(bitPattern: e.dqOffsetBits!),
                    blocks: blocks, dqBlockSize: e.dqBlockSize!, into: $0.baseAddress!)
            }
        } else {
            let a = pointer(e.parts["absmax"]!).assumingMemoryBound(to: Float.self)
            for i in 0..<blocks { out[i] = a[i] }
        }
        return out
    }

    /// Any tensor as float32 values (dequantized or converted).
    public func floats(_ name: String) throws -> [Float] {
        let e = try entry(name)
        let n = e.elementCount
        var out = [Float](repeating: 0, count: n)
        try out.withUnsafeMutableBufferPointer { dst in try decode(e, into: dst.baseAddress!) }
        return out
    }

    public func decode(_ e: QST4TensorEntry, into dst: UnsafeMutablePointer<Float>) throws {
        let n = e.elementCount
        switch e.dtype {
        case .nf4:
            let absmax = self.absmax(e)
            let codes = pointer(e.parts["codes"]!).assumingMemoryBound(to: UInt8.self)
            absmax.withUnsafeBufferPointer {
                NF4.dequantize(
                    codes: codes, absmax: $0.baseAddress!, blockSize: e.blockSize!, start: 0, count: n, into: dst)
            }
        case .f32:
            dst.update(from: pointer(e.parts["data"]!).assumingMemoryBound(to: Float.self), count: n)
        case .bf16:
            FloatConversion.bf16ToF32(pointer(e.parts["data"]!).assumingMemoryBound(to: UInt16.self), dst, n)
        case .f16:
            FloatConversion.f16ToF32(pointer(e.parts["data"]!).assumingMemoryBound(to: UInt16.self), dst, n)
        default:
            throw QSTError.tensor(path, e.name, "dtype \(e.dtype.rawValue) cannot be decoded to float")
        }
    }

    /// Checks every tensor's CRC-32C and every embedded file's SHA-256; returns one line per failure.
    public func verify(progress: ((Int, Int) -> Void)? = nil) -> [String] {
        var failures: [String] = []
        for f in header.files {
            do {
                let data = try embeddedFile(f.name) ?? Data()
                if Checksums.sha256Hex(data) != f.sha256 {
                    failures.append("\(path): file '\(f.name)': sha256 mismatch")
                }
            } catch { failures.append("\(error)") }
        }
        for (i, e) in header.tensors.enumerated() {
            var crc: UInt32 = 0
            for part in e.orderedPartNames {
                let r = e.parts[part]!
                crc = Checksums.crc32c(UnsafeRawBufferPointer(start: pointer(r), count: r.length), continuing: crc)
            }
            if crc != e.crc32c {
                failures.append(
                    "\(path): tensor '\(e.name)': checksum mismatch (stored \(String(e.crc32c, radix: 16)), computed \(String(crc, radix: 16)))"
                )
            }
            progress?(i + 1, header.tensors.count)
        }
        return failures
    }

    /// Byte range of layer `i` (all of its tensors), for prefetching and dropping pages.
    public func layerRange(_ i: Int) -> ByteRange? {
        header.layers.first(where: { $0.index == i }).map { ByteRange(offset: $0.offset, length: $0.length) }
    }

    public func prefetchLayer(_ i: Int) {
        if let r = layerRange(i) { file.advise(offset: r.offset, length: r.length, willNeed: true) }
    }

    public func dropLayer(_ i: Int) {
        if let r = layerRange(i) { file.advise(offset: r.offset, length: r.length, willNeed: false) }
    }

    /// The model's config.json as embedded.
    public func configJSON() throws -> Data {
        guard let d = try embeddedFile("config.json") else { throw QSTError.file(path, "no embedded config.json") }
        return d
    }

    /// SHA-256 of the tensor directory: the identity of the base weights, independent of
    /// provenance and timestamps.
    public func directorySHA256() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Checksums.sha256Hex(try encoder.encode(header.tensors))
    }
}
