import Foundation
import QSTFormat
import QSTNN
import QSTTokenizer

/// How one tensor's values are stored, pointing into a mapping (zero-copy) or into `owner`.
public enum WeightStorage {
    case f32(UnsafePointer<Float>)
    /// Raw bfloat16 bits.
    case bf16(UnsafePointer<UInt16>)
    /// NF4 codes (element 2j in the high nibble) with the decoded per-block absmax.
    case nf4(codes: UnsafePointer<UInt8>, absmax: FloatBuffer, blockSize: Int)
}

/// One tensor handed out by a `WeightSource`. Keep it (or its `owner`) alive while using its pointers.
public struct WeightTensor {
    public let name: String
    public let shape: [Int]
    public let storage: WeightStorage
    /// Whatever must stay alive for the pointers to stay valid (mapping or converted copy).
    public let owner: AnyObject?

    public init(name: String, shape: [Int], storage: WeightStorage, owner: AnyObject?) {
        self.name = name; self.shape = shape; self.storage = storage; self.owner = owner
    }

    public var count: Int { shape.reduce(1, *) }

    /// Elements `start..<start+count` (flattened row-major) as F32 into `dst`.
    public func decode(start: Int, count: Int, into dst: UnsafeMutablePointer<Float>) {
        switch storage {
        case .f32(let p): dst.update(from: p + start, count: count)
        case .bf16(let p): FloatConversion.bf16ToF32(p + start, dst, count)
        case .nf4(let codes, let absmax, let blockSize):
            NF4Tile.dequantize(
                codes: codes, absmax: absmax.constPointer, blockSize: blockSize,
                start: start, count: count, into: dst)
        }
    }

    /// All values as an owned F32 buffer (norm weights, biases: small tensors).
    public func floats() -> FloatBuffer {
        let b = FloatBuffer(count: count)
        decode(start: 0, count: count, into: b.pointer)
        return b
    }

    /// Checks the shape against what the model expects, naming the tensor.
    public func expectShape(_ expected: [Int], origin: String) throws {
        guard shape == expected else {
            throw QSTError.tensor(origin, name, "shape \(shape) does not match the config (expected \(expected))")
        }
    }
}

/// Where the frozen model's tensors come from: a `.qst4` container or a safetensors checkpoint.
public protocol WeightSource: AnyObject {
    /// The file or folder, for messages.
    var origin: String { get }
    func contains(_ name: String) -> Bool
    func tensor(_ name: String) throws -> WeightTensor
    func configJSON() throws -> Data
    /// A file that travels with the weights (tokenizer.json, tokenizer_config.json, generation_config.json), or nil.
    func auxiliaryFile(_ name: String) throws -> Data?
    /// Stored bytes of all tensors (for the resident budget decision).
    var weightBytes: Int { get }
    /// Hints that layer `i` will be read soon / is no longer needed (page cache advice; may be no-ops).
    func prefetchLayer(_ i: Int)
    func dropLayer(_ i: Int)
}

extension WeightSource {
    /// The tokenizer that travels with the weights.
    public func loadTokenizer() throws -> Tokenizer {
        guard let json = try auxiliaryFile("tokenizer.json") else {
            throw QSTError.file(origin, "no tokenizer.json with the weights")
        }
        let tokenizer: Tokenizer
        do {
            tokenizer = try Tokenizer(tokenizerJSON: json, configJSON: try auxiliaryFile("tokenizer_config.json"))
        } catch {
            throw QSTError.file(origin, "tokenizer.json: \(error)")
        }
        // A tokenizer of another model hands out ids the embedding has no row for: say so now, by file,
        // rather than at the first forward pass.
        let config = try JSONValue.parse([UInt8](try configJSON()), context: origin + " config.json")
        if let rows = config["vocab_size"]?.exactInt, tokenizer.vocabSize > rows {
            throw QSTError.file(
                origin,
                "tokenizer.json has \(tokenizer.vocabSize) tokens but config.json's vocab_size is \(rows); "
                    + "the tokenizer belongs to another model")
        }
        return tokenizer
    }
}

/// Opens a `.qst4` file as a container, anything else as a safetensors checkpoint (file or HF folder).
public func openWeightSource(path: String) throws -> WeightSource {
    var isDir: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
        throw QSTError.file(path, "no such file or folder")
    }
    if !isDir.boolValue, path.hasSuffix(".qst4") { return try ContainerWeightSource(path: path) }
    return try SafetensorsWeightSource(path: path)
}

/// A safetensors checkpoint: F32 tensors are used in place when aligned, BF16 stays BF16 (decoded per tile),
/// F16 is converted to an owned F32 copy.
public final class SafetensorsWeightSource: WeightSource {
    public let checkpoint: SafetensorsCheckpoint
    public var origin: String { checkpoint.path }

    public init(path: String) throws { checkpoint = try SafetensorsCheckpoint(path: path) }

    public func contains(_ name: String) -> Bool { checkpoint.info(name) != nil }

    public func tensor(_ name: String) throws -> WeightTensor {
        guard let file = checkpoint.file(for: name), let info = checkpoint.info(name) else {
            throw QSTError.tensor(checkpoint.path, name, "no such tensor in the checkpoint")
        }
        let p = file.mapped.base + info.dataOffset
        switch info.dtype {
        case .f32 where Int(bitPattern: p) % 4 == 0:
            return WeightTensor(
                name: name, shape: info.shape,
                storage: .f32(p.assumingMemoryBound(to: Float.self)), owner: file)
        case .bf16 where Int(bitPattern: p) % 2 == 0:
            return WeightTensor(
                name: name, shape: info.shape,
                storage: .bf16(p.assumingMemoryBound(to: UInt16.self)), owner: file)
        case .f32, .bf16, .f16:
            let copy = FloatBuffer(try file.floats(name))
            return WeightTensor(name: name, shape: info.shape, storage: .f32(copy.constPointer), owner: copy)
        default:
            throw QSTError.tensor(file.path, name, "dtype \(info.dtype.rawValue) is not a float type the engine reads")
        }
    }

    public func configJSON() throws -> Data {
        guard let d = checkpoint.configJSON else {
            throw QSTError.file(checkpoint.directory, "no config.json beside the weights")
        }
        return d
    }

    public func auxiliaryFile(_ name: String) throws -> Data? {
        FileManager.default.contents(atPath: (checkpoint.directory as NSString).appendingPathComponent(name))
    }

    public var weightBytes: Int { checkpoint.files.reduce(0) { $0 + $1.mapped.size } }

    // Safetensors files have no per-layer layout, so there is nothing precise to advise.
    public func prefetchLayer(_ i: Int) {}
    public func dropLayer(_ i: Int) {}
}

/// A `.qst4` container: every tensor read straight from the mapping; NF4 absmax decoded on request.
public final class ContainerWeightSource: WeightSource {
    public let container: QST4Container
    public var origin: String { container.path }

    public init(path: String) throws { container = try QST4Container(path: path) }
    public init(container: QST4Container) { self.container = container }

    public func contains(_ name: String) -> Bool { container.contains(name) }

    public func tensor(_ name: String) throws -> WeightTensor {
        let e = try container.entry(name)
        func part(_ p: String) throws -> UnsafeRawPointer {
            guard let r = e.parts[p] else { throw QSTError.tensor(container.path, name, "missing part '\(p)'") }
            return container.pointer(r)
        }
        switch e.dtype {
        case .f32:
            return WeightTensor(
                name: name, shape: e.shape, storage: .f32(try part("data").assumingMemoryBound(to: Float.self)),
                owner: container)
        case .bf16:
            return WeightTensor(
                name: name, shape: e.shape, storage: .bf16(try part("data").assumingMemoryBound(to: UInt16.self)),
                owner: container)
        case .f16:
            let copy = FloatBuffer(try container.floats(name))
            return WeightTensor(name: name, shape: e.shape, storage: .f32(copy.constPointer), owner: copy)
        case .nf4:
            guard let bs = e.blockSize else {
                throw QSTError.tensor(container.path, name, "NF4 tensor without a block size")
            }
            let codes = try part("codes").assumingMemoryBound(to: UInt8.self)
            let absmax = FloatBuffer(container.absmax(e))
            return WeightTensor(
                name: name, shape: e.shape, storage: .nf4(codes: codes, absmax: absmax, blockSize: bs), owner: container
            )
        default:
            throw QSTError.tensor(
                container.path, name, "dtype \(e.dtype.rawValue) is not a float type the engine reads")
        }
    }

    public func configJSON() throws -> Data { try container.configJSON() }
    public func auxiliaryFile(_ name: String) throws -> Data? { try container.embeddedFile(name) }
    public var weightBytes: Int { container.headerOffset - container.dataOffset }
    public func prefetchLayer(_ i: Int) { container.prefetchLayer(i) }
    public func dropLayer(_ i: Int) { container.dropLayer(i) }
}
