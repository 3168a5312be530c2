import Foundation
import QSTCore
import QSTFormat

/// Fast, seeded random tensor contents, generated in parallel chunks (each chunk has its own
/// SplitMix64 stream, so the result does not depend on the thread count).
struct RandomFill {
    let seed: UInt64
    static let chunk = 1 << 20

    static func mix(_ z0: UInt64) -> UInt64 {
        var z = z0 &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Fills `bytes` with random 64-bit words from stream `stream`.
    func randomBytes(_ bytes: UnsafeMutableRawBufferPointer, stream: UInt64) {
        let words = bytes.count / 8
        let base = SendablePointer(bytes.baseAddress!.bindMemory(to: UInt64.self, capacity: max(words, 1)))
        let chunks = (words + Self.chunk - 1) / Self.chunk
        let s = Self.mix(seed ^ Self.mix(stream))
        Parallel.forRanges(chunks) { c0, c1 in
            for c in c0..<c1 {
                var state = Self.mix(s &+ UInt64(c))
                for w in (c * Self.chunk)..<min(words, (c + 1) * Self.chunk) {
                    state &+= 0x9E37_79B9_7F4A_7C15
                    base[w] = Self.mix(state)
                }
            }
        }
        for i in (words * 8)..<bytes.count { bytes[i] = UInt8(truncatingIfNeeded: Self.mix(s &+ UInt64(i))) }
    }

    /// BF16 values uniform in about ±0.035 (standard deviation ≈ 0.02).
    func bf16(count: Int, stream: UInt64) -> UnsafeRawBufferPointer {
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: 2 * count, alignment: 64)
        randomBytes(out, stream: stream)
        let p = SendablePointer(out.baseAddress!.bindMemory(to: UInt16.self, capacity: count))
        Parallel.forRanges(count, minChunk: 1 << 16) { a, b in
            for i in a..<b {
                let r = p[i]
                let f = (Float(r & 0x7FFF) / 32768 * 0.07 - 0.035)
                p[i] = UInt16(truncatingIfNeeded: f.bitPattern >> 16)
            }
        }
        return UnsafeRawBufferPointer(out)
    }

    /// Random NF4 codes (NF4 codes are equiprobable for normal weights) with double-quantized
    /// absmax around 0.05, as for weights of standard deviation 0.02 in blocks of 64.
    func nf4(count: Int, stream: UInt64) -> NF4Tensor {
        var codes = [UInt8](repeating: 0, count: (count + 1) / 2)
        codes.withUnsafeMutableBytes { randomBytes($0, stream: stream) }
        let blocks = (count + 63) / 64
        var absmaxCodes = [UInt8](repeating: 0, count: blocks)
        absmaxCodes.withUnsafeMutableBytes { randomBytes($0, stream: stream ^ 0xABCD) }
        for i in 0..<blocks { absmaxCodes[i] = 112 + absmaxCodes[i] % 32 }  // DYN8 entries near 0
        let groups = (blocks + 255) / 256
        return NF4Tensor(
            count: count, blockSize: 64, codes: codes, absmax: [], absmaxCodes: absmaxCodes,
            absmax2: [Float](repeating: 0.5, count: groups), absmaxOffset: 0.05, dqBlockSize: 256)
    }
}
