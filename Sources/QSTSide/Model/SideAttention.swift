import Foundation
import QSTCore
import QSTKernels
import QSTNN

/// Causal GQA attention for the side blocks, whose heads are tiny (d/(r·heads), 8 for SmolLM2 at r 8): a
/// BLAS call per head would do little arithmetic per call, and the T² exponentials dominate. Each
/// (sequence, head) runs on one worker in QSTKernels' `qst_side_attn_*` (scalar reference, AVX2, AVX-512,
/// NEON; vecmath.h), touching only the admissible keys.
/// Semantics as `QSTNN.Attention` with right padding: query `i` of sequence `b` attends keys
/// `j ≤ i, j < lengths[b]`; probabilities `[B, H, T, T]` are kept for backward (row `i` holds
/// `min(i + 1, len)` of them).
enum SideAttention {
    typealias Ptr = SendablePointer<Float>

    static func forward(
        out: UnsafeMutablePointer<Float>, probs: UnsafeMutablePointer<Float>,
        q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
        lengths: [Int], shape s: Attention.Shape
    ) {
        let T = s.seqLen, hd = s.headDim, H = s.nHeads, group = s.nHeads / s.nKVHeads
        let ldq = H * hd, ldk = s.nKVHeads * hd
        let scale = 1 / Float(hd).squareRoot()
        let o = Ptr(out), pp = Ptr(probs), qp = Ptr(q), kp = Ptr(k), vp = Ptr(v)
        Parallel.forRanges(s.batch * H, minChunk: 1) { u0, u1 in
            let scratch = UnsafeMutablePointer<Float>.allocate(
                capacity: Int(qst_side_attn_forward_scratch(Int64(T), Int64(hd))))
            defer { scratch.deallocate() }
            for u in u0..<u1 {
                let b = u / H, h = u % H, g = h / group
                let rc = qst_side_attn_forward(
                    (qp + b * T * ldq + h * hd).base, Int64(ldq),
                    (kp + b * T * ldk + g * hd).base, (vp + b * T * ldk + g * hd).base,
                    Int64(ldk), Int64(T), Int64(hd), Int64(lengths[b]), scale,
                    (pp + u * T * T).base, (o + b * T * ldq + h * hd).base, Int64(ldq),
                    scratch, Int32(QST_VEC_AUTO.rawValue))
                precondition(rc == 0, "qst_side_attn_forward refused its arguments")
            }
        }
    }

    /// Accumulates `dq`, `dk`, `dv` (`+=`). Workers own one (sequence, kv head) each, so the query heads
    /// sharing a kv head add into its `dk`/`dv` without races.
    static func backward(
        dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>, dv: UnsafeMutablePointer<Float>,
        dout: UnsafePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>,
        v: UnsafePointer<Float>, probs: UnsafePointer<Float>, lengths: [Int], shape s: Attention.Shape
    ) {
        let T = s.seqLen, hd = s.headDim, H = s.nHeads, K = s.nKVHeads, group = H / K
        let ldq = H * hd, ldk = K * hd
        let scale = 1 / Float(hd).squareRoot()
        let dqp = Ptr(dq), dkp = Ptr(dk), dvp = Ptr(dv), dop = Ptr(dout), qp = Ptr(q), kp = Ptr(k), vp = Ptr(v)
        let pp = Ptr(probs)
        Parallel.forRanges(s.batch * K, minChunk: 1) { u0, u1 in
            let scratch = UnsafeMutablePointer<Float>.allocate(
                capacity: Int(qst_side_attn_backward_scratch(Int64(T), Int64(hd))))
            defer { scratch.deallocate() }
            for u in u0..<u1 {
                let b = u / K, g = u % K, h0 = g * group
                let rc = qst_side_attn_backward(
                    (qp + b * T * ldq + h0 * hd).base, (dop + b * T * ldq + h0 * hd).base,
                    (dqp + b * T * ldq + h0 * hd).base, Int64(ldq),
                    (kp + b * T * ldk + g * hd).base, (vp + b * T * ldk + g * hd).base,
                    (dkp + b * T * ldk + g * hd).base, (dvp + b * T * ldk + g * hd).base,
                    Int64(ldk), (pp + (b * H + h0) * T * T).base, Int64(group), Int64(T),
                    Int64(hd), Int64(lengths[b]), scale, scratch, Int32(QST_VEC_AUTO.rawValue))
                precondition(rc == 0, "qst_side_attn_backward refused its arguments")
            }
        }
    }
}
