/// How a tensor is cut and stored in NF4 (bitsandbytes `quantize_4bit(quant_type="nf4")`).
public struct NF4Parameters: Sendable, Codable, Equatable {
    /// Elements per absmax block: a power of two in 32...4096 (QLoRA uses 64).
    public var blockSize: Int = 64
    /// QLoRA double quantization: absmax values stored as 8-bit dynamic codes plus one float32
    /// scale per `dqBlockSize` of them and a float32 offset (their mean).
    public var doubleQuant: Bool = true
    /// absmax values per second-level block: a power of two in 32...4096 (bitsandbytes uses 256).
    public var dqBlockSize: Int = 256

    public init(blockSize: Int = 64, doubleQuant: Bool = true, dqBlockSize: Int = 256) {
        self.blockSize = blockSize
        self.doubleQuant = doubleQuant
        self.dqBlockSize = dqBlockSize
    }

    public static let allowedBlockSizes: ClosedRange<Int> = 32...4096

    public func validate() throws {
        for (name, size) in [("block size", blockSize), ("double-quantization block size", dqBlockSize)] {
            guard Self.allowedBlockSizes.contains(size), size & (size - 1) == 0 else {
                throw QSTError("NF4 parameters: \(name) \(size) is not a power of two in 32...4096")
            }
        }
    }
}

/// One NF4-quantized tensor that owns its bytes (what the container writer stores).
/// absmax is either plain float32 per block or double-quantized.
public struct NF4Tensor: Sendable, Equatable {
    public var count: Int
    public var blockSize: Int
    /// (count+1)/2 bytes, element 2j in the high nibble.
    public var codes: [UInt8]
    /// Without double quantization: one per block. With it: empty.
    public var absmax: [Float]
    /// With double quantization: one dynamic-map index per block.
    public var absmaxCodes: [UInt8]
    /// With double quantization: one float32 scale per `dqBlockSize` absmax values.
    public var absmax2: [Float]
    /// With double quantization: the mean that was subtracted from the absmax values.
    public var absmaxOffset: Float
    public var dqBlockSize: Int

    public init(
        count: Int, blockSize: Int, codes: [UInt8], absmax: [Float], absmaxCodes: [UInt8] = [],
        absmax2: [Float] = [], absmaxOffset: Float = 0, dqBlockSize: Int = 256
    ) {
        self.count = count
        self.blockSize = blockSize
        self.codes = codes
        self.absmax = absmax
        self.absmaxCodes = absmaxCodes
        self.absmax2 = absmax2
        self.absmaxOffset = absmaxOffset
        self.dqBlockSize = dqBlockSize
    }

    public var blocks: Int { (count + blockSize - 1) / blockSize }
    public var isDoubleQuantized: Bool { !absmaxCodes.isEmpty }

    /// The per-block float32 absmax that dequantization multiplies by.
    public func decodedAbsmax() -> [Float] {
        guard isDoubleQuantized else { return absmax }
        var out = [Float](repeating: 0, count: blocks)
        absmaxCodes.withUnsafeBufferPointer { q in
            absmax2.withUnsafeBufferPointer { a2 in
                out.withUnsafeMutableBufferPointer { o in
                    NF4.decodeAbsmax(
                        codes: q.baseAddress!, absmax2: a2.baseAddress!, offset: absmaxOffset,
                        blocks: blocks, dqBlockSize: dqBlockSize, into: o.baseAddress!)
                }
            }
        }
        return out
    }

    /// Stored bits per weight: codes, absmax (or its codes, second-level scales and offset).
    public var bitsPerWeight: Double {
        guard count > 0 else { return 0 }
        var bits = codes.count * 8 + absmax.count * 32 + absmaxCodes.count * 8 + absmax2.count * 32
        if isDoubleQuantized { bits += 32 }
        return Double(bits) / Double(count)
    }

    /// Checks that the array sizes agree with `count` and the block sizes (for tensors read back
    /// from a file); `file`/`tensor` name the culprit in the error.
    public func validate(file: String, tensor: String) throws {
        let p = NF4Parameters(blockSize: blockSize, doubleQuant: isDoubleQuantized, dqBlockSize: dqBlockSize)
        do { try p.validate() } catch let e as QSTError { throw QSTError.tensor(file, tensor, e.message) }
        guard count >= 0, codes.count == (count + 1) / 2 else {
            throw QSTError.tensor(
                file, tensor, "NF4 codes hold \(codes.count) bytes, \(count) elements need \((count + 1) / 2)")
        }
        if isDoubleQuantized {
            let dqBlocks = (blocks + dqBlockSize - 1) / dqBlockSize
            guard absmax.isEmpty, absmaxCodes.count == blocks, absmax2.count == dqBlocks else {
                throw QSTError.tensor(
                    file, tensor,
                    "NF4 double-quantized absmax: \(absmaxCodes.count) codes and "
                        + "\(absmax2.count) scales, expected \(blocks) and \(dqBlocks)")
            }
        } else {
            guard absmax.count == blocks, absmaxCodes.isEmpty, absmax2.isEmpty else {
                throw QSTError.tensor(file, tensor, "NF4 absmax holds \(absmax.count) values, expected \(blocks)")
            }
        }
    }
}
