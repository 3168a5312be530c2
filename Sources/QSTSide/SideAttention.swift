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

    static func forward(out: UnsafeMutablePointer<Float>, probs: UnsafeMutablePointer<Float>,
                        q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                        lengths: [Int], shape s: Attention.Shape) {
        let T = s.seqLen, hd = s.headDim, H = s.nHeads, group = s.nHeads / s.nKVHeads
        let ldq = H * hd, ldk = s.nKVHeads * hd
        let scale = 1 / Float(hd).squareRoot()
        let o = Ptr(out), pp = Ptr(probs), qp = Ptr(q), kp = Ptr(k), vp = Ptr(v)
        Parallel.forRanges(s.batch * H, minChunk: 1) { u0, u1 in
            for u in u0..<u1 {
                let b = u / H, h = u % H, g = h / group, len = lengths[b]
                let qb = qp + b * T * ldq + h * hd, kb = kp + b * T * ldk + g * hd, vb = vp + b * T * ldk + g * hd
                let ob = o + b * T * ldq + h * hd
                for i in 0..<T {
                    let row = (pp + (u * T + i) * T).base
                    let n = keyCount(i, len)
                    let orow = ob + i * ldq
                    for d in 0..<hd { orow[d] = 0 }
                    guard n > 0 else { continue }
                    let qi = qb + i * ldq
                    var mx = -Float.infinity
                    for j in 0..<n {
                        let kj = kb + j * ldk
                        var acc: Float = 0
                        for d in 0..<hd { acc += qi[d] * kj[d] }
                        acc *= scale
                        row[j] = acc
                        mx = max(mx, acc)
                    }
                    let inv = 1 / FastExp.expShiftedInPlace(row, count: n, shift: mx)
                    for j in 0..<n {
                        let p = row[j] * inv
                        row[j] = p
                        let vj = vb + j * ldk
                        for d in 0..<hd { orow[d] += p * vj[d] }
                    }
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
            let ds = UnsafeMutablePointer<Float>.allocate(capacity: max(1, T))
            defer { ds.deallocate() }
            for u in u0..<u1 {
                let b = u / K, g = u % K, len = lengths[b]
                let kb = kp + b * T * ldk + g * hd, vb = vp + b * T * ldk + g * hd
                let dkb = dkp + b * T * ldk + g * hd, dvb = dvp + b * T * ldk + g * hd
                for h in (g * group)..<((g + 1) * group) {
                    let qb = qp + b * T * ldq + h * hd, dqb = dqp + b * T * ldq + h * hd
                    let dob = dop + b * T * ldq + h * hd
                    for i in 0..<T {
                        let n = keyCount(i, len)
                        guard n > 0 else { continue }
                        let p = pp + ((b * H + h) * T + i) * T
                        let doi = dob + i * ldq
                        var dot: Float = 0
                        for j in 0..<n {
                            let vj = vb + j * ldk
                            var dp: Float = 0
                            for d in 0..<hd { dp += doi[d] * vj[d] }
                            ds[j] = dp
                            dot += p[j] * dp
                            let dvj = dvb + j * ldk
                            for d in 0..<hd { dvj[d] += p[j] * doi[d] }
                        }
                        let qi = qb + i * ldq, dqi = dqb + i * ldq
                        for j in 0..<n {
                            let gs = scale * p[j] * (ds[j] - dot)
                            let kj = kb + j * ldk, dkj = dkb + j * ldk
                            for d in 0..<hd {
                                dqi[d] += gs * kj[d]
                                dkj[d] += gs * qi[d]
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `exp` over arrays, 16 lanes at a time: Cody–Waite range reduction `x = n·ln2 + r` and a degree-7
/// Taylor polynomial on |r| ≤ ln2/2 (relative error below 2e-7, like libm's expf), `2ⁿ` by exponent bits.
enum FastExp {
    typealias V = SIMD16<Float>

    @inline(__always) static func exp(_ x0: V) -> V {
        let x = x0.clamped(lowerBound: V(repeating: -87.3), upperBound: V(repeating: 88.7))
        let n = (x * V(repeating: 1.44269504088896341)).rounded(.toNearestOrEven)
        // ln2 split into a high part exact in float and a low correction.
        var r = x - n * V(repeating: 0.693359375)
        r = r - n * V(repeating: -2.12194440e-4)
        var p = V(repeating: 1.0 / 5040)
        p = p * r + V(repeating: 1.0 / 720)
        p = p * r + V(repeating: 1.0 / 120)
        p = p * r + V(repeating: 1.0 / 24)
        p = p * r + V(repeating: 1.0 / 6)
        p = p * r + V(repeating: 0.5)
        p = p * r + V(repeating: 1)
        p = p * r + V(repeating: 1)
        let bits = (SIMD16<Int32>(n) &+ 127) &<< 23
        return p * unsafeBitCast(bits, to: V.self)
    }

    /// `row[j] = exp(row[j] − shift)` for `j < count`; returns the sum (accumulated in Double per block).
    static func expShiftedInPlace(_ row: UnsafeMutablePointer<Float>, count: Int, shift: Float) -> Float {
        var j = 0
        var acc = V(repeating: 0)
        let raw = UnsafeMutableRawPointer(row)
        let sv = V(repeating: shift)
        while j + 16 <= count {
            let e = exp(raw.loadUnaligned(fromByteOffset: 4 * j, as: V.self) - sv)
            raw.storeBytes(of: e, toByteOffset: 4 * j, as: V.self)
            acc += e
            j += 16
        }
        var sum = Double(acc.sum())
        if j < count {
            var tail = V(repeating: -80)
            for t in 0..<(count - j) { tail[t] = row[j + t] - shift }
            let e = exp(tail)
            for t in 0..<(count - j) { row[j + t] = e[t]; sum += Double(e[t]) }
        }
        return Float(sum)
    }
}
