import Foundation
import QSTCore
import QSTKernels

/// NF4 codec, bit-compatible with bitsandbytes (QLoRA). Hot loops live in QSTKernels/nf4*.c
/// (AVX-512, AVX2 and NEON paths and a scalar one, all giving identical bits); this layer splits big tensors
/// over the cores and does the small double-quantization step.
///
/// Semantics (see Scripts/nf4_reference.py for the independent NumPy statement):
/// - blocks over the row-major flattened tensor; a partial last block is padded with 0.0 and
///   has its own absmax; the padding decides the low nibble of the last byte of an odd count;
/// - v = x * float32(1/absmax), code = bitsandbytes' dQuantizeNF4 tree (strict `>`, ties low).
///   Clipping v to [-1, 1] is implied: the tree already sends everything past ±1 to code 0/15;
/// - an all-zero block (absmax 0) gives v = 0*inf = NaN, which the tree maps to code 0 (-1.0),
///   exactly like bitsandbytes' CUDA kernel; it dequantizes to -1.0*0 = -0.0;
/// - double quantization: offset = mean(absmax) (torch's float32 mean, see TorchMean),
///   absmax-offset quantized with DynamicMap8 in blocks of dqBlockSize;
///   decoded absmax = float32(float32(map[q] * absmax2) + offset).
public enum NF4 {
    /// bitsandbytes' 16 NormalFloat values, by code (code 7 is 0, code 15 is 1).
    public static let codeValues: [Float] = (0..<16).map { qst_nf4_code_value(Int32($0)) }

    /// Whether the AVX-512 kernels run on this machine (else the scalar ones do).
    public static var usesAVX512: Bool { qst_nf4_has_avx512() != 0 }

    /// Kernel selection (QST_IMPL_* in kernel_impl.h), for tests that compare the implementations.
    enum Kernel: Int32, CaseIterable {
        case auto = 0, scalar = 1, avx512 = 2, avx2 = 3, neon = 4

        /// Whether this path can run here (auto and scalar always can).
        var isSupported: Bool { qst_impl_supported(rawValue) != 0 }
    }

    /// Below these many elements an automatic (`threads: 0`) call stays on the calling thread:
    /// waking a second core costs more than the work (dequantization runs ~10 Gelem/s per core).
    static let quantizeParallelThreshold = 1 << 17
    static let dequantizeParallelThreshold = 1 << 20
    /// The worker count at first use (QST_THREADS, or the processor count).
    static let defaultThreads = Parallel.threadCount()

    public static func quantize(
        _ x: UnsafeBufferPointer<Float>, parameters: NF4Parameters,
        file: String, tensor: String
    ) throws -> NF4Tensor {
        try quantize(x, parameters: parameters, file: file, tensor: tensor, kernel: .auto, threads: 0)
    }

    static func quantize(
        _ x: UnsafeBufferPointer<Float>, parameters: NF4Parameters, file: String, tensor: String,
        kernel: Kernel, threads: Int
    ) throws -> NF4Tensor {
        do { try parameters.validate() } catch let e as QSTError { throw QSTError.tensor(file, tensor, e.message) }
        let count = x.count, blockSize = parameters.blockSize
        let blocks = (count + blockSize - 1) / blockSize
        var absmaxStorage: [Float] = []
        // Not zero-filled first: the kernel writes every code byte (the partner of an odd last element
        // included) and every block's absmax, and a bad value throws before the arrays are used.
        let firstBad = NF4FirstIndex()
        let codes = [UInt8](unsafeUninitializedCapacity: (count + 1) / 2) { c, codesDone in
            codesDone = c.count
            guard count > 0 else { return }
            absmaxStorage = [Float](unsafeUninitializedCapacity: blocks) { a, absmaxDone in
                absmaxDone = a.count
                let src = SendablePointer(x.baseAddress!), dst = SendablePointer(c.baseAddress!),
                    am = SendablePointer(a.baseAddress!)
                let workers = workerCount(count, threads: threads, threshold: quantizeParallelThreshold)
                Parallel.forRanges(blocks, threads: workers, minChunk: max(1, 16384 / blockSize)) { b0, b1 in
                    let bad = qst_nf4_quantize_blocks(
                        src.base, Int64(count), Int64(blockSize), Int64(b0), Int64(b1),
                        dst.base, am.base, kernel.rawValue)
                    if bad >= 0 { firstBad.record(Int(bad)) }
                }
            }
        }
        let absmax = absmaxStorage
        if let bad = firstBad.value {
            let what = x[bad].isNaN ? "NaN" : (x[bad] > 0 ? "+inf" : "-inf")
            throw QSTError.tensor(file, tensor, "\(what) at element \(bad); NF4 needs finite values")
        }
        guard parameters.doubleQuant else {
            return NF4Tensor(
                count: count, blockSize: blockSize, codes: codes, absmax: absmax,
                dqBlockSize: parameters.dqBlockSize)
        }
        let offset = mean(absmax)
        let centered = absmax.map { $0 - offset }
        let (q, absmax2) = DynamicMap8.quantizeBlockwise(
            centered, blockSize: parameters.dqBlockSize,
            threads: threads > 0 ? threads : Parallel.defaultThreads)
        return NF4Tensor(
            count: count, blockSize: blockSize, codes: codes, absmax: [], absmaxCodes: q,
            absmax2: absmax2, absmaxOffset: offset, dqBlockSize: parameters.dqBlockSize)
    }

    /// bitsandbytes' offset: torch's float32 `absmax.mean()` in torch's own summation order.
    static func mean(_ v: [Float]) -> Float { TorchMean.mean(v) }

    /// Recovers per-block float32 absmax from the double-quantized form into `out` (`blocks` values).
    public static func decodeAbsmax(
        codes: UnsafePointer<UInt8>, absmax2: UnsafePointer<Float>, offset: Float,
        blocks: Int, dqBlockSize: Int, into out: UnsafeMutablePointer<Float>
    ) {
        DynamicMap8.signedCode.withUnsafeBufferPointer { map in
            for i in 0..<blocks {
                // Two roundings, as bitsandbytes: dequantize_blockwise, then `absmax += offset`.
                let scaled = map[Int(codes[i])] * absmax2[i / dqBlockSize]
                out[i] = scaled + offset
            }
        }
    }

    /// Dequantizes elements [start, start+count) into float32. Any start works; an even start
    /// (byte aligned) keeps the whole range on the vector path. `threads` 0 = automatic
    /// (all cores from 2^20 elements up); callers already running in parallel pass 1.
    public static func dequantize(
        codes: UnsafePointer<UInt8>, absmax: UnsafePointer<Float>, blockSize: Int,
        start: Int, count: Int, into out: UnsafeMutablePointer<Float>, threads: Int = 0
    ) {
        dequantize(
            codes: codes, absmax: absmax, blockSize: blockSize, start: start, count: count, into: out,
            threads: threads, kernel: .auto)
    }

    static func dequantize(
        codes: UnsafePointer<UInt8>, absmax: UnsafePointer<Float>, blockSize: Int, start: Int,
        count: Int, into out: UnsafeMutablePointer<Float>, threads: Int, kernel: Kernel
    ) {
        let c = SendablePointer(codes), a = SendablePointer(absmax), o = SendablePointer(out)
        splitEvenly(count: count, threads: threads) { lo, hi in
            qst_nf4_dequantize_f32(
                c.base, a.base, Int64(blockSize), Int64(start + lo), Int64(hi - lo), o.base + lo, kernel.rawValue)
        }
    }

    /// Same values as `dequantize`, rounded to bfloat16 bit patterns (round to nearest even).
    public static func dequantizeBF16(
        codes: UnsafePointer<UInt8>, absmax: UnsafePointer<Float>, blockSize: Int,
        start: Int, count: Int, into out: UnsafeMutablePointer<UInt16>, threads: Int = 0
    ) {
        dequantizeBF16(
            codes: codes, absmax: absmax, blockSize: blockSize, start: start, count: count, into: out,
            threads: threads, kernel: .auto)
    }

    static func dequantizeBF16(
        codes: UnsafePointer<UInt8>, absmax: UnsafePointer<Float>, blockSize: Int, start: Int,
        count: Int, into out: UnsafeMutablePointer<UInt16>, threads: Int, kernel: Kernel
    ) {
        let c = SendablePointer(codes), a = SendablePointer(absmax), o = SendablePointer(out)
        splitEvenly(count: count, threads: threads) { lo, hi in
            qst_nf4_dequantize_bf16(
                c.base, a.base, Int64(blockSize), Int64(start + lo), Int64(hi - lo), o.base + lo, kernel.rawValue)
        }
    }

    /// Whole tensor to float32 (plain or double-quantized absmax).
    public static func dequantize(_ t: NF4Tensor) -> [Float] {
        let absmax = t.decodedAbsmax()
        var out = [Float](repeating: 0, count: t.count)
        guard t.count > 0 else { return out }
        t.codes.withUnsafeBufferPointer { c in
            absmax.withUnsafeBufferPointer { a in
                out.withUnsafeMutableBufferPointer { o in
                    dequantize(
                        codes: c.baseAddress!, absmax: a.baseAddress!, blockSize: t.blockSize,
                        start: 0, count: t.count, into: o.baseAddress!)
                }
            }
        }
        return out
    }

    /// Explicit `threads` > 0 is obeyed; 0 means all cores for large ranges, one for small.
    static func workerCount(_ count: Int, threads: Int, threshold: Int) -> Int {
        threads > 0 ? threads : (count >= threshold ? defaultThreads : 1)
    }

    /// Splits [0, count) into chunks whose offsets are multiples of 32 elements (whole bytes,
    /// whole vector steps) and runs them over the cores when the range is large.
    static func splitEvenly(count: Int, threads: Int, _ body: @Sendable (Int, Int) -> Void) {
        guard count > 0 else { return }
        let workers = workerCount(count, threads: threads, threshold: dequantizeParallelThreshold)
        if workers == 1 { body(0, count); return }
        let groups = (count + 31) / 32
        Parallel.forRanges(groups, threads: workers, minChunk: 1024) { g0, g1 in
            body(g0 * 32, min(count, g1 * 32))
        }
    }
}

/// Smallest element index reported by any worker (the first bad value in the tensor).
final class NF4FirstIndex: @unchecked Sendable {
    private let lock = NSLock()
    private var best: Int?
    func record(_ i: Int) { lock.lock(); best = min(best ?? i, i); lock.unlock() }
    var value: Int? { lock.lock(); defer { lock.unlock() }; return best }
}
