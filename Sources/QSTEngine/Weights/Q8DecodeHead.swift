import QSTKernels
import QSTNN
import enum QSTCore.Parallel
import struct QSTCore.SendablePointer

/// An int8 copy of a BF16 or F32 output head, for decoding only (`FrozenModel.decodeLogits`).
///
/// Why: a decoded token reads every weight once, so it is bound by memory bandwidth, and a tied BF16
/// head is half of what SmolLM2-135M reads per token (57 of 112 MB). Q8 rows (`q8.h`: int8 values with
/// a float scale per 64 elements) are half the BF16 bytes, and the kernels multiply them with x rounded
/// to int8 per 32 elements (integer dot products on AVX2, AVX-512 VNNI and NEON). The error per logit
/// is bounded in `q8.h`; llama.cpp keeps its head at 6 or 8 bits for the same reason.
///
/// Used only under `--matmul auto` and only by the decoding loops (`qst-generate`, tuned generation, the
/// server, `qst-eval bench` tg): prompt logits, perplexity, KL comparisons, token scores and training
/// keep the BF16 head.
final class Q8DecodeHead {
    /// Rows per call: the kernels read the whole head once per 8 rows of x, so a call is a handful of
    /// decode steps (one per request), not a prompt.
    static let maxRows = 16

    let rows: Int
    let k: Int
    private let codes: UnsafeMutablePointer<Int8>
    private let scales: FloatBuffer

    /// Nil when the head is already 4-bit, its width is not a multiple of 64, or no vector Q8 path
    /// runs on this CPU (the scalar loop reads half the bytes but is slower than the BF16 kernels).
    init?(head: WeightTensor) {
        guard head.shape.count == 2, head.shape[1] % Int(QST_Q8_BLOCK) == 0,
            qst_q8_best_path() != Int32(QST_Q8_SCALAR.rawValue)
        else { return nil }
        let n = head.shape[0], k = head.shape[1]
        let source: (UnsafeRawPointer, Int32)
        switch head.storage {
        case .bf16(let p): source = (UnsafeRawPointer(p), 1)
        case .f32(let p): source = (UnsafeRawPointer(p), 0)
        case .nf4: return nil
        }
        rows = n; self.k = k
        codes = .allocate(capacity: n * k)
        scales = FloatBuffer(count: n * k / Int(QST_Q8_BLOCK))
        let src = SendablePointer(source.0.assumingMemoryBound(to: UInt8.self)), isBF16 = source.1
        let q = SendablePointer(codes), s = SendablePointer(scales.pointer)
        let elementBytes = isBF16 == 1 ? 2 : 4, blocks = k / Int(QST_Q8_BLOCK)
        Parallel.forRanges(n, minChunk: 1024) { r0, r1 in
            qst_q8_quantize_rows(
                src.base + r0 * k * elementBytes, isBF16, Int64(r1 - r0), Int64(k), Int64(k),
                q.base + r0 * k, s.base + r0 * blocks)
        }
    }

    deinit { codes.deallocate() }

    /// Path name for reports ("avx2_int8", "avx512_vnni_int8", ...).
    var pathName: String { String(cString: qst_q8_path_name(qst_q8_best_path())) }

    /// `out [n, rows]` = `x [n, k] · Wᵀ`, the output rows split over the workers.
    func forward(out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, n: Int, threads: Int) {
        let xs = SendablePointer(x), ys = SendablePointer(out), q = SendablePointer(codes)
        let s = SendablePointer(scales.constPointer), k = self.k, width = rows
        OutputSplit.run(outFeatures: rows, threads: threads, macs: n * rows * k) { c0, c1 in
            // Cannot fail: k % 64 == 0 and the path was checked at init.
            _ = qst_q8_gemv(
                xs.base, Int64(n), Int64(k), q.base, s.base, Int64(k), ys.base, Int64(width),
                Int64(c0), Int64(c1), Int32(QST_Q8_AUTO.rawValue))
        }
    }
}
