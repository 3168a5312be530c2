import Foundation
import QSTCore
import QSTNN

/// Causal GQA attention for the side blocks, whose heads are tiny (d/(r·heads), 4 for SmolLM2): a BLAS
/// call per head would do little arithmetic per call, and the T² exponentials dominate. Here each
/// (sequence, head) runs on one worker with a vectorised exp, touching only the admissible keys.
/// Semantics as `QSTNN.Attention` with right padding: query `i` of sequence `b` attends keys
/// `j ≤ i, j < lengths[b]`; probabilities `[B, H, T, T]` are kept for backward (row `i` holds
/// `min(i + 1, len)` of them).
enum SideAttention {
    typealias Ptr = QSTNN.SendablePointer<Float>

    @inline(__always) static func keyCount(_ i: Int, _ len: Int) -> Int { min(i + 1, len) }

    /// Copies head `[T, hd]` rows (stride `ld`) into `[hd, T]` so loops over keys are contiguous.
    @inline(__always) static func transpose(_ src: Ptr, ld: Int, T: Int, hd: Int, into dst: UnsafeMutablePointer<Float>) {
        for j in 0..<T { for d in 0..<hd { dst[d * T + j] = src[j * ld + d] } }
    }

    static func forward(out: UnsafeMutablePointer<Float>, probs: UnsafeMutablePointer<Float>,
                        q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                        lengths: [Int], shape s: Attention.Shape) {
        let T = s.seqLen, hd = s.headDim, H = s.nHeads, group = s.nHeads / s.nKVHeads
        let ldq = H * hd, ldk = s.nKVHeads * hd
        let scale = 1 / Float(hd).squareRoot()
        let o = Ptr(out), pp = Ptr(probs), qp = Ptr(q), kp = Ptr(k), vp = Ptr(v)
        Parallel.forRanges(s.batch * H, minChunk: 1) { u0, u1 in
            let kt = UnsafeMutablePointer<Float>.allocate(capacity: max(1, 2 * hd * T))
            defer { kt.deallocate() }
            let vt = kt + hd * T
            for u in u0..<u1 {
                let b = u / H, h = u % H, g = h / group, len = lengths[b]
                let qb = qp + b * T * ldq + h * hd
                transpose(kp + b * T * ldk + g * hd, ld: ldk, T: T, hd: hd, into: kt)
                transpose(vp + b * T * ldk + g * hd, ld: ldk, T: T, hd: hd, into: vt)
                let ob = o + b * T * ldq + h * hd
                for i in 0..<T {
                    let row = (pp + (u * T + i) * T).base
                    let n = keyCount(i, len)
                    let orow = ob + i * ldq
                    for d in 0..<hd { orow[d] = 0 }
                    guard n > 0 else { continue }
                    let qi = qb + i * ldq
                    let q0 = qi[0] * scale
                    for j in 0..<n { row[j] = q0 * kt[j] }
                    for d in 1..<hd {
                        let qd = qi[d] * scale, kd = kt + d * T
                        for j in 0..<n { row[j] += qd * kd[j] }
                    }
                    let mx = Reduce.max(row, n)
                    let inv = 1 / FastExp.expShiftedInPlace(row, count: n, shift: mx)
                    for j in 0..<n { row[j] *= inv }
                    for d in 0..<hd { orow[d] = Reduce.dot(row, vt + d * T, n) }
                }
            }
        }
    }

    /// Accumulates `dq`, `dk`, `dv` (`+=`). Workers own one (sequence, kv head) each, so the query heads
    /// sharing a kv head add into its `dk`/`dv` without races.
    static func backward(dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>, dv: UnsafeMutablePointer<Float>,
                         dout: UnsafePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>,
                         v: UnsafePointer<Float>, probs: UnsafePointer<Float>, lengths: [Int], shape s: Attention.Shape) {
        let T = s.seqLen, hd = s.headDim, H = s.nHeads, K = s.nKVHeads, group = H / K
        let ldq = H * hd, ldk = K * hd
        let scale = 1 / Float(hd).squareRoot()
        let dqp = Ptr(dq), dkp = Ptr(dk), dvp = Ptr(dv), dop = Ptr(dout), qp = Ptr(q), kp = Ptr(k), vp = Ptr(v)
        let pp = Ptr(probs)
        Parallel.forRanges(s.batch * K, minChunk: 1) { u0, u1 in
            // Keys, values and their gradients transposed to [hd, T], plus one row of dS.
            let buf = UnsafeMutablePointer<Float>.allocate(capacity: max(1, 4 * hd * T + T))
            defer { buf.deallocate() }
            let kt = buf, vt = buf + hd * T, dkt = buf + 2 * hd * T, dvt = buf + 3 * hd * T, ds = buf + 4 * hd * T
            for u in u0..<u1 {
                let b = u / K, g = u % K, len = lengths[b]
                let kb = kp + b * T * ldk + g * hd, vb = vp + b * T * ldk + g * hd
                transpose(kb, ld: ldk, T: T, hd: hd, into: kt)
                transpose(vb, ld: ldk, T: T, hd: hd, into: vt)
                dkt.update(repeating: 0, count: 2 * hd * T)
                for h in (g * group)..<((g + 1) * group) {
                    let qb = qp + b * T * ldq + h * hd, dqb = dqp + b * T * ldq + h * hd
                    let dob = dop + b * T * ldq + h * hd
                    for i in 0..<T {
                        let n = keyCount(i, len)
                        guard n > 0 else { continue }
                        let p = (pp + ((b * H + h) * T + i) * T).base
                        let doi = dob + i * ldq
                        // dP = dO·Vᵀ and dV += Pᵀ·dO for this row.
                        let do0 = doi[0]
                        for j in 0..<n { ds[j] = do0 * vt[j] }
                        for d in 1..<hd {
                            let dd = doi[d], vd = vt + d * T
                            for j in 0..<n { ds[j] += dd * vd[j] }
                        }
                        for d in 0..<hd {
                            let dd = doi[d], dvd = dvt + d * T
                            for j in 0..<n { dvd[j] += p[j] * dd }
                        }
                        let dot = Reduce.dot(p, ds, n)
                        for j in 0..<n { ds[j] = scale * p[j] * (ds[j] - dot) }
                        let qi = qb + i * ldq, dqi = dqb + i * ldq
                        for d in 0..<hd {
                            let dkd = dkt + d * T, qd = qi[d]
                            dqi[d] += Reduce.dot(ds, kt + d * T, n)
                            for j in 0..<n { dkd[j] += ds[j] * qd }
                        }
                    }
                }
                let dkb = dkp + b * T * ldk + g * hd, dvb = dvp + b * T * ldk + g * hd
                for j in 0..<T {
                    for d in 0..<hd { dkb[j * ldk + d] += dkt[d * T + j]; dvb[j * ldk + d] += dvt[d * T + j] }
                }
            }
        }
    }
}

/// Reductions with eight independent accumulators: strict float semantics keep the compiler from
/// reordering a single-accumulator loop, which would then run at one add per FP latency.
enum Reduce {
    @inline(__always) static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        var s0: Float = 0, s1: Float = 0, s2: Float = 0, s3: Float = 0
        var s4: Float = 0, s5: Float = 0, s6: Float = 0, s7: Float = 0
        var j = 0
        while j + 8 <= n {
            s0 += a[j] * b[j]; s1 += a[j + 1] * b[j + 1]; s2 += a[j + 2] * b[j + 2]; s3 += a[j + 3] * b[j + 3]
            s4 += a[j + 4] * b[j + 4]; s5 += a[j + 5] * b[j + 5]; s6 += a[j + 6] * b[j + 6]; s7 += a[j + 7] * b[j + 7]
            j += 8
        }
        while j < n { s0 += a[j] * b[j]; j += 1 }
        return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
    }

    @inline(__always) static func dot(_ a: UnsafeMutablePointer<Float>, _ b: UnsafeMutablePointer<Float>, _ n: Int) -> Float {
        dot(UnsafePointer(a), UnsafePointer(b), n)
    }

    @inline(__always) static func max(_ a: UnsafePointer<Float>, _ n: Int) -> Float {
        var m0 = -Float.infinity, m1 = m0, m2 = m0, m3 = m0
        var j = 0
        while j + 4 <= n {
            m0 = Swift.max(m0, a[j]); m1 = Swift.max(m1, a[j + 1]); m2 = Swift.max(m2, a[j + 2]); m3 = Swift.max(m3, a[j + 3])
            j += 4
        }
        while j < n { m0 = Swift.max(m0, a[j]); j += 1 }
        return Swift.max(Swift.max(m0, m1), Swift.max(m2, m3))
    }

    @inline(__always) static func max(_ a: UnsafeMutablePointer<Float>, _ n: Int) -> Float { max(UnsafePointer(a), n) }
}
