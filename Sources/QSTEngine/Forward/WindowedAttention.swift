import CBLAS
import Foundation
import QSTNN
import enum QSTCore.Parallel
import struct QSTCore.SendablePointer

/// Causal GQA attention limited to a sliding window (Mistral's `sliding_window`): the query at cache row
/// `p` attends rows `j` with `p − window < j ≤ p` — itself and the `window − 1` rows before it, as
/// Hugging Face's sliding-window mask (`kv_idx > q_idx − sliding_window`).
///
/// Keys come from two places, so the cache never holds more than `window − 1` past rows:
/// - the ring (`ringK, ringV [batch, ringRows, kvDim]`, `ringMask [batch, ringRows]`): the past rows
///   `0..<pastLength`, row `a` kept in slot `a mod ringRows` (only the latest `ringRows` survive);
/// - the new tokens' own keys and values (`newK, newV [batch·newTokens, kvDim]`, `newMask [batch·newTokens]`).
/// Softmax does not care about key order, so the ring is read in slot order and masked by each slot's row.
/// Query rows go in blocks of 64 that multiply only the new keys their window reaches, so a long prefill
/// costs O(T·window), not O(T²). A query with no admissible key gets a zero output.
enum WindowedAttention {
    struct Keys {
        var ringK: UnsafePointer<Float>, ringV: UnsafePointer<Float>, ringMask: UnsafePointer<UInt8>, ringRows: Int
        var newK: UnsafePointer<Float>, newV: UnsafePointer<Float>, newMask: UnsafePointer<UInt8>
    }

    /// The cache row held by ring slot `c` after `pastLength` rows were written (nil: empty or overwritten).
    static func ringRow(slot c: Int, pastLength: Int, ringRows: Int) -> Int? {
        guard pastLength > 0, ringRows > 0, c < ringRows else { return nil }
        let a = pastLength - 1 - ((pastLength - 1 - c) % ringRows + ringRows) % ringRows
        return a >= 0 ? a : nil
    }

    static func forward(
        out: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>, keys: Keys,
        batch: Int, newTokens: Int, pastLength: Int, window: Int,
        nHeads: Int, nKVHeads: Int, headDim: Int, threads: Int
    ) {
        let Tq = newTokens, hd = headDim, R = pastLength > 0 ? keys.ringRows : 0, W = window
        guard Tq > 0 else { return }
        let ldq = nHeads * hd, ldk = nKVHeads * hd, group = nHeads / nKVHeads
        let scale = 1 / Float(hd).squareRoot()
        let rowOfSlot = (0..<R).map { ringRow(slot: $0, pastLength: pastLength, ringRows: R) ?? -1 }
        let block = 64
        let maxCols = R + min(Tq, block + W - 1)
        let o = SendablePointer(out), qs = SendablePointer(q)
        let rk = SendablePointer(keys.ringK), rv = SendablePointer(keys.ringV), rm = SendablePointer(keys.ringMask)
        let nk = SendablePointer(keys.newK), nv = SendablePointer(keys.newV), nm = SendablePointer(keys.newMask)
        Parallel.forRanges(batch * nHeads, threads: threads, minChunk: 1) { p0, p1 in
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: min(block, Tq) * maxCols)
            defer { scores.deallocate() }
            for pair in p0..<p1 {
                let b = pair / nHeads, h = pair % nHeads, g = h / group
                let ringK = rk.base + b * R * ldk + g * hd, ringV = rv.base + b * R * ldk + g * hd
                let ringMask = rm.base + b * R
                let newK = nk.base + b * Tq * ldk + g * hd, newV = nv.base + b * Tq * ldk + g * hd
                let newMask = nm.base + b * Tq
                var i0 = 0
                while i0 < Tq {
                    let tb = min(block, Tq - i0)
                    // New keys this block can reach, and whether any of its queries still sees the past.
                    let n0 = max(0, i0 - W + 1), n1 = i0 + tb
                    let rc = (R > 0 && i0 < W - 1) ? R : 0
                    let ld = rc + (n1 - n0)
                    let qh = qs.base + (b * Tq + i0) * ldq + h * hd
                    if rc > 0 {
                        cblas_sgemm(
                            CblasRowMajor, CblasNoTrans, CblasTrans, Int32(tb), Int32(rc), Int32(hd),
                            scale, qh, Int32(ldq), ringK, Int32(ldk), 0, scores, Int32(ld))
                    }
                    cblas_sgemm(
                        CblasRowMajor, CblasNoTrans, CblasTrans, Int32(tb), Int32(n1 - n0), Int32(hd),
                        scale, qh, Int32(ldq), newK + n0 * ldk, Int32(ldk), 0, scores + rc, Int32(ld))
                    for r in 0..<tb {
                        let i = i0 + r, p = pastLength + i
                        let row = scores + r * ld
                        // Admissible: ring slots holding a real row inside the window; new keys t with
                        // i − W < t ≤ i. Everything else gets probability 0.
                        func allowed(_ j: Int) -> Bool {
                            if j < rc { let a = rowOfSlot[j]; return a >= 0 && a > p - W && ringMask[j] != 0 }
                            let t = n0 + j - rc
                            return t <= i && t > i - W && newMask[t] != 0
                        }
                        var mx = -Float.infinity
                        for j in 0..<ld where allowed(j) { mx = max(mx, row[j]) }
                        if mx == -Float.infinity { row.update(repeating: 0, count: ld); continue }
                        var sum: Float = 0
                        for j in 0..<ld {
                            let e: Float = allowed(j) ? Foundation.exp(row[j] - mx) : 0
                            row[j] = e
                            sum += e
                        }
                        let inv = 1 / sum
                        for j in 0..<ld { row[j] *= inv }
                    }
                    let dst = o.base + (b * Tq + i0) * ldq + h * hd
                    if rc > 0 {
                        cblas_sgemm(
                            CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(tb), Int32(hd), Int32(rc),
                            1, scores, Int32(ld), ringV, Int32(ldk), 0, dst, Int32(ldq))
                    }
                    cblas_sgemm(
                        CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(tb), Int32(hd), Int32(n1 - n0),
                        1, scores + rc, Int32(ld), newV + n0 * ldk, Int32(ldk), rc > 0 ? 1 : 0, dst, Int32(ldq))
                    i0 += tb
                }
            }
        }
    }

    /// After attention: the new rows' keys and values go into their ring slots (the latest `ringRows`).
    static func store(
        keys k: UnsafePointer<Float>, values v: UnsafePointer<Float>, into kv: KVSlot,
        batch: Int, newTokens: Int, kvDim: Int
    ) {
        let R = kv.capacity
        guard R > 0 else { return }
        for b in 0..<batch {
            for t in max(0, newTokens - R)..<newTokens {
                let slot = (kv.pastLength + t) % R
                (kv.keys + (b * R + slot) * kvDim).update(from: k + (b * newTokens + t) * kvDim, count: kvDim)
                (kv.values + (b * R + slot) * kvDim).update(from: v + (b * newTokens + t) * kvDim, count: kvDim)
            }
        }
    }
}
