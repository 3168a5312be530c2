import CBLAS
import Foundation
import QSTCore

/// Causal multi-head self-attention with grouped-query heads (GQA), for training.
///
/// Layouts (row-major, token rows `b·T + t`):
/// - `q, out, dq, dout`: `[B·T, nHeads·headDim]`
/// - `k, v, dk, dv`: `[B·T, nKVHeads·headDim]`; query head `h` uses kv head `h / (nHeads / nKVHeads)`
/// - `probs`: `[B, nHeads, T, T]` softmax probabilities saved for backward (masked entries are 0)
/// - `keyMask`: optional `[B·T]`, nonzero = token may be attended to (padding → 0)
///
/// Query `i` attends key `j` iff `j ≤ i` and `keyMask[b·T + j] ≠ 0`. A query with no admissible key
/// (e.g. a left-padding row) gets an all-zero probability row and a zero output.
/// Scores are scaled by `1/sqrt(headDim)`. QKᵀ and PV run through BLAS per (sequence, head);
/// softmax rows run on `Parallel.forRanges` between BLAS calls, never at the same time.
public enum Attention {
    public struct Shape: Sendable, Equatable {
        public var batch: Int, seqLen: Int, nHeads: Int, nKVHeads: Int, headDim: Int
        public init(batch: Int, seqLen: Int, nHeads: Int, nKVHeads: Int, headDim: Int) {
            precondition(nKVHeads > 0 && nHeads % nKVHeads == 0, "nHeads must be a multiple of nKVHeads")
            self.batch = batch; self.seqLen = seqLen; self.nHeads = nHeads
            self.nKVHeads = nKVHeads; self.headDim = headDim
        }
        /// Floats needed for `probs`.
        public var probsCount: Int { batch * nHeads * seqLen * seqLen }
    }

    /// Builds a `[B·T]` key mask for right-padded sequences of the given lengths.
    public static func maskFromLengths(_ lengths: [Int], seqLen: Int) -> [UInt8] {
        var m = [UInt8](repeating: 0, count: lengths.count * seqLen)
        for (b, len) in lengths.enumerated() { for t in 0..<min(len, seqLen) { m[b * seqLen + t] = 1 } }
        return m
    }

    public static func forward(
        out: UnsafeMutablePointer<Float>, probs: UnsafeMutablePointer<Float>,
        q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
        keyMask: UnsafePointer<UInt8>?, shape: Shape
    ) {
        let T = shape.seqLen, hd = shape.headDim
        let ldq = shape.nHeads * hd, ldk = shape.nKVHeads * hd
        let group = shape.nHeads / shape.nKVHeads
        let scale = 1 / Float(hd).squareRoot()
        for b in 0..<shape.batch {
            for h in 0..<shape.nHeads {
                let g = h / group
                let qh = q + b * T * ldq + h * hd
                let kh = k + b * T * ldk + g * hd
                let vh = v + b * T * ldk + g * hd
                let p = probs + (b * shape.nHeads + h) * T * T
                cblas_sgemm(
                    CblasRowMajor, CblasNoTrans, CblasTrans, Int32(T), Int32(T), Int32(hd),
                    scale, qh, Int32(ldq), kh, Int32(ldk), 0, p, Int32(T))
                maskedSoftmaxRows(
                    scores: p, rows: T, cols: T, ld: T, queryOffset: 0,
                    keyMask: keyMask.map { $0 + b * T })
                cblas_sgemm(
                    CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(T), Int32(hd), Int32(T),
                    1, p, Int32(T), vh, Int32(ldk), 0, out + b * T * ldq + h * hd, Int32(ldq))
            }
        }
    }

    /// Accumulates `dq`, `dk`, `dv` (`+=`) from `dout` and the `probs` saved by `forward`.
    public static func backward(
        dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>,
        dv: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
        q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
        probs: UnsafePointer<Float>, shape: Shape
    ) {
        let T = shape.seqLen, hd = shape.headDim
        let ldq = shape.nHeads * hd, ldk = shape.nKVHeads * hd
        let group = shape.nHeads / shape.nKVHeads
        let scale = 1 / Float(hd).squareRoot()
        let dScores = Buffer<Float>(count: T * T)
        let ds = dScores.pointer
        for b in 0..<shape.batch {
            for h in 0..<shape.nHeads {
                let g = h / group
                let qOff = b * T * ldq + h * hd, kOff = b * T * ldk + g * hd
                let p = probs + (b * shape.nHeads + h) * T * T
                // dP = dO · Vᵀ
                cblas_sgemm(
                    CblasRowMajor, CblasNoTrans, CblasTrans, Int32(T), Int32(T), Int32(hd),
                    1, dout + qOff, Int32(ldq), v + kOff, Int32(ldk), 0, ds, Int32(T))
                softmaxBackwardRows(dScores: ds, probs: p, rows: T, cols: T, ld: T, scale: scale)
                // dQ += dS · K,  dK += dSᵀ · Q,  dV += Pᵀ · dO
                cblas_sgemm(
                    CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(T), Int32(hd), Int32(T),
                    1, ds, Int32(T), k + kOff, Int32(ldk), 1, dq + qOff, Int32(ldq))
                cblas_sgemm(
                    CblasRowMajor, CblasTrans, CblasNoTrans, Int32(T), Int32(hd), Int32(T),
                    1, ds, Int32(T), q + qOff, Int32(ldq), 1, dk + kOff, Int32(ldk))
                cblas_sgemm(
                    CblasRowMajor, CblasTrans, CblasNoTrans, Int32(T), Int32(hd), Int32(T),
                    1, p, Int32(T), dout + qOff, Int32(ldq), 1, dv + kOff, Int32(ldk))
            }
        }
    }

    /// Forward without saving probabilities (evaluation / no-grad runs); same layouts and masking as `forward`.
    public static func forwardInference(
        out: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>,
        k: UnsafePointer<Float>, v: UnsafePointer<Float>,
        keyMask: UnsafePointer<UInt8>?, shape: Shape
    ) {
        forwardCached(
            out: out, q: q, kCache: k, vCache: v, keyMask: keyMask, batch: shape.batch,
            newTokens: shape.seqLen, pastLength: 0, capacity: shape.seqLen,
            nHeads: shape.nHeads, nKVHeads: shape.nKVHeads, headDim: shape.headDim)
    }

    /// Inference attention of `newTokens` queries per sequence over a KV cache.
    ///
    /// - `q, out`: `[B·newTokens, nHeads·headDim]`
    /// - `kCache, vCache`: `[B, capacity, nKVHeads·headDim]`; rows `0..<pastLength+newTokens` must be filled
    ///   (the caller writes the new tokens' rotated keys and values at rows `pastLength...` first)
    /// - `keyMask`: optional `[B, capacity]`, nonzero = attendable
    ///
    /// Query `i` sits at cache row `pastLength + i` and attends rows `j ≤ pastLength + i`.
    public static func forwardCached(
        out: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>,
        kCache: UnsafePointer<Float>, vCache: UnsafePointer<Float>,
        keyMask: UnsafePointer<UInt8>?, batch: Int, newTokens: Int,
        pastLength: Int, capacity: Int,
        nHeads: Int, nKVHeads: Int, headDim: Int
    ) {
        precondition(pastLength + newTokens <= capacity, "KV cache overflow")
        let Tq = newTokens, L = pastLength + newTokens, hd = headDim
        guard Tq > 0 else { return }
        let ldq = nHeads * hd, ldk = nKVHeads * hd
        let group = nHeads / nKVHeads
        let scale = 1 / Float(hd).squareRoot()
        let scratch = Buffer<Float>(count: Tq * L)
        let s = scratch.pointer
        for b in 0..<batch {
            for h in 0..<nHeads {
                let g = h / group
                let qh = q + b * Tq * ldq + h * hd
                let kh = kCache + b * capacity * ldk + g * hd
                let vh = vCache + b * capacity * ldk + g * hd
                cblas_sgemm(
                    CblasRowMajor, CblasNoTrans, CblasTrans, Int32(Tq), Int32(L), Int32(hd),
                    scale, qh, Int32(ldq), kh, Int32(ldk), 0, s, Int32(L))
                maskedSoftmaxRows(
                    scores: s, rows: Tq, cols: L, ld: L, queryOffset: pastLength,
                    keyMask: keyMask.map { $0 + b * capacity })
                cblas_sgemm(
                    CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(Tq), Int32(hd), Int32(L),
                    1, s, Int32(L), vh, Int32(ldk), 0, out + b * Tq * ldq + h * hd, Int32(ldq))
            }
        }
    }

    /// Row `i` keeps columns `j ≤ queryOffset + i` with `keyMask[j] ≠ 0`, softmaxes them, zeroes the rest.
    static func maskedSoftmaxRows(
        scores: UnsafeMutablePointer<Float>, rows: Int, cols: Int, ld: Int,
        queryOffset: Int, keyMask: UnsafePointer<UInt8>?
    ) {
        let sp = SendablePointer(scores)
        let mp = keyMask.map { SendablePointer($0) }
        Parallel.forRanges(rows, minChunk: 32) { r0, r1 in
            for i in r0..<r1 {
                let row = sp + i * ld
                let last = min(cols, queryOffset + i + 1)
                var mx = -Float.infinity
                for j in 0..<last where mp == nil || mp![j] != 0 { mx = max(mx, row[j]) }
                if mx == -Float.infinity {
                    for j in 0..<cols { row[j] = 0 }
                    continue
                }
                var sum: Float = 0
                for j in 0..<last {
                    if let m = mp, m[j] == 0 { row[j] = 0; continue }
                    let e = (row[j] - mx).exp()
                    row[j] = e
                    sum += e
                }
                let inv = 1 / sum
                for j in 0..<last { row[j] *= inv }
                for j in last..<cols { row[j] = 0 }
            }
        }
    }

    /// In place: `dS[i,j] = scale · P[i,j] · (dP[i,j] − Σ_k P[i,k]·dP[i,k])`.
    static func softmaxBackwardRows(
        dScores: UnsafeMutablePointer<Float>, probs: UnsafePointer<Float>,
        rows: Int, cols: Int, ld: Int, scale: Float
    ) {
        let dp = SendablePointer(dScores), pp = SendablePointer(probs)
        Parallel.forRanges(rows, minChunk: 32) { r0, r1 in
            for i in r0..<r1 {
                let d = dp + i * ld, p = pp + i * ld
                var dot: Float = 0
                for j in 0..<cols { dot += p[j] * d[j] }
                for j in 0..<cols { d[j] = scale * p[j] * (d[j] - dot) }
            }
        }
    }
}

extension Float {
    @inline(__always) func exp() -> Float { Foundation.exp(self) }
}
