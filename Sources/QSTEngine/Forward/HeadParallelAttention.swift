import CBLAS
import Foundation
import QSTKernels
import QSTNN
import enum QSTCore.Parallel
import struct QSTCore.SendablePointer

/// Cached causal GQA attention with the (sequence, head) pairs spread over the workers, each calling
/// single-threaded BLAS. Same contract and numbers as `Attention.forwardCached`; used while the engine
/// holds BLAS at one thread (see `BLASThreadScope`), where QSTNN's per-head loop would run on one core.
enum HeadParallelAttention {
    static func forward(
        out: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>, kCache: UnsafePointer<Float>,
        vCache: UnsafePointer<Float>, keyMask: UnsafePointer<UInt8>, batch: Int, newTokens: Int,
        pastLength: Int, capacity: Int, nHeads: Int, nKVHeads: Int, headDim: Int, threads: Int,
        rowIndependent: Bool = false
    ) {
        let Tq = newTokens, L = pastLength + newTokens, hd = headDim
        guard Tq > 0 else { return }
        // Row-independent mode (right-padded sequences, no past): the products cover only each sequence's
        // real tokens, so their shapes — and OpenBLAS's loops, which depend on them — ignore the padding.
        // Padding query rows get zeros.
        let realRows: [Int]? =
            rowIndependent && pastLength == 0
            ? (0..<batch).map { b in (0..<Tq).first { keyMask[b * capacity + $0] == 0 } ?? Tq } : nil
        let ldq = nHeads * hd, ldk = nKVHeads * hd, group = nHeads / nKVHeads
        let scale = 1 / Float(hd).squareRoot()
        let o = SendablePointer(out), qs = SendablePointer(q), ks = SendablePointer(kCache)
        let vs = SendablePointer(vCache), ms = SendablePointer(keyMask)
        let denseMask = (0..<batch).map { b in (0..<L).allSatisfy { keyMask[b * capacity + $0] != 0 } }
        // Short decodes are too little work to wake the workers for (see OutputSplit.minParallelMACs).
        let workers = batch * nHeads * Tq * L * hd < OutputSplit.minParallelMACs ? 1 : threads
        Parallel.forRanges(batch * nHeads, threads: workers, minChunk: 1) { p0, p1 in
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: min(block, Tq) * L)
            defer { scores.deallocate() }
            for pair in p0..<p1 {
                let b = pair / nHeads, h = pair % nHeads, g = h / group
                let rows = realRows?[b] ?? Tq
                causalRows(
                    out: o.base + b * Tq * ldq + h * hd, q: qs.base + b * Tq * ldq + h * hd, ldq: ldq,
                    keys: ks.base + b * capacity * ldk + g * hd, values: vs.base + b * capacity * ldk + g * hd,
                    ldk: ldk,
                    mask: ms.base + b * capacity, dense: realRows != nil || denseMask[b], rows: rows,
                    keyLimit: realRows == nil ? L : rows, pastLength: pastLength, headDim: hd, scale: scale,
                    scores: scores)
                for i in rows..<Tq { (o.base + (b * Tq + i) * ldq + h * hd).update(repeating: 0, count: hd) }
            }
        }
    }

    /// The same over a cache slot of either storage. A float16 cache (`KVStorage.float16`; no row-independent
    /// mode: such caches only serve incremental decoding): a decode step (one new token) runs QSTKernels' decode
    /// attention once per key/value head for all the query heads sharing it, reading the cache's halves
    /// directly; longer steps (prompts) widen each key/value head's rows to float32 once (the keys transposed,
    /// straight from their tiles) and take the BLAS products above.
    static func forward(
        out: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>, slot kv: KVSlot, batch: Int, newTokens: Int,
        nHeads: Int, nKVHeads: Int, headDim hd: Int, threads: Int, rowIndependent: Bool = false
    ) {
        guard case .float16(let keys, let values, _, let keyStride) = kv.storage else {
            forward(
                out: out, q: q, kCache: kv.keys, vCache: kv.values, keyMask: kv.keyMask, batch: batch,
                newTokens: newTokens, pastLength: kv.pastLength, capacity: kv.capacity, nHeads: nHeads,
                nKVHeads: nKVHeads, headDim: hd, threads: threads, rowIndependent: rowIndependent)
            return
        }
        let Tq = newTokens, pastLength = kv.pastLength, L = pastLength + newTokens, capacity = kv.capacity
        guard Tq > 0 else { return }
        let ldq = nHeads * hd, kvDim = nKVHeads * hd, group = nHeads / nKVHeads
        let scale = 1 / Float(hd).squareRoot()
        let o = SendablePointer(out), qs = SendablePointer(q), ks = SendablePointer(keys)
        let vs = SendablePointer(values), ms = SendablePointer(kv.keyMask)
        let denseMask = (0..<batch).map { b in (0..<L).allSatisfy { kv.keyMask[b * capacity + $0] != 0 } }
        let workers = batch * nHeads * Tq * L * hd < OutputSplit.minParallelMACs ? 1 : threads
        if Tq == 1 {
            Parallel.forRanges(batch * nKVHeads, threads: workers, minChunk: 1) { p0, p1 in
                let scratch = UnsafeMutablePointer<Float>.allocate(capacity: group * L)
                defer { scratch.deallocate() }
                for pair in p0..<p1 {
                    let b = pair / nKVHeads, g = pair % nKVHeads, head = b * ldq + g * group * hd
                    qst_decode_attention_f16(
                        o.base + head, qs.base + head, Int64(group), ks.base + pair * keyStride,
                        vs.base + b * capacity * kvDim + g * hd, Int64(kvDim), Int64(L), Int64(hd), scale,
                        denseMask[b] ? nil : ms.base + b * capacity, scratch, Int32(QST_VEC_AUTO.rawValue))
                }
            }
            return
        }
        let blas = BLASThreadScope()
        defer { blas.restore() }
        // Every key/value head widened first, then the (sequence, query head) pairs spread as above: per key/value
        // head SmolLM2's 3 would split 2 : 1 over two cores.
        let kf = UnsafeMutablePointer<Float>.allocate(capacity: batch * nKVHeads * L * hd)
        let vf = UnsafeMutablePointer<Float>.allocate(capacity: batch * nKVHeads * L * hd)
        defer { kf.deallocate(); vf.deallocate() }
        let kw = SendablePointer(kf), vw = SendablePointer(vf)
        Parallel.forRanges(batch * nKVHeads, threads: workers, minChunk: 1) { p0, p1 in
            for pair in p0..<p1 {
                let b = pair / nKVHeads, g = pair % nKVHeads
                qst_f16_key_tiles_widen(
                    kw.base + pair * L * hd, Int64(L), ks.base + pair * keyStride, Int64(hd), Int64(L),
                    Int32(QST_VEC_AUTO.rawValue))
                qst_f32_from_f16(
                    vw.base + pair * L * hd, Int64(hd), vs.base + b * capacity * kvDim + g * hd, Int64(kvDim),
                    Int64(L), Int64(hd), Int32(QST_VEC_AUTO.rawValue))
            }
        }
        Parallel.forRanges(batch * nHeads, threads: workers, minChunk: 1) { p0, p1 in
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: min(block, Tq) * L)
            defer { scores.deallocate() }
            for pair in p0..<p1 {
                let b = pair / nHeads, h = pair % nHeads, kv = b * nKVHeads + h / group
                causalRows(
                    out: o.base + b * Tq * ldq + h * hd, q: qs.base + b * Tq * ldq + h * hd, ldq: ldq,
                    keys: kw.base + kv * L * hd, values: vw.base + kv * L * hd, ldk: hd, keysTransposed: true,
                    mask: ms.base + b * capacity, dense: denseMask[b], rows: Tq, keyLimit: L, pastLength: pastLength,
                    headDim: hd, scale: scale, scores: scores)
            }
        }
    }

    /// Query rows in blocks of `block`, so each block multiplies only the keys it may see (causal: about half the
    /// work). `out` and `q` point at row 0 of one (sequence, head) (row stride `ldq`), `keys` and `values` at
    /// its key/value head's row 0 (stride `ldk`; with `keysTransposed` the keys are `[headDim, keyLimit]`, row
    /// stride `keyLimit`), `mask` at its sequence's key mask. `scores` holds `min(block, rows) × keyLimit` floats.
    private static func causalRows(
        out: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>, ldq: Int, keys: UnsafePointer<Float>,
        values: UnsafePointer<Float>, ldk: Int, keysTransposed: Bool = false, mask: UnsafePointer<UInt8>, dense: Bool,
        rows: Int, keyLimit: Int, pastLength: Int, headDim hd: Int, scale: Float, scores: UnsafeMutablePointer<Float>
    ) {
        var i0 = 0
        while i0 < rows {
            let tb = min(block, rows - i0), lb = min(keyLimit, pastLength + i0 + tb)
            cblas_sgemm(
                CblasRowMajor, CblasNoTrans, keysTransposed ? CblasNoTrans : CblasTrans, Int32(tb), Int32(lb),
                Int32(hd), scale, q + i0 * ldq, Int32(ldq), keys, Int32(keysTransposed ? keyLimit : ldk), 0, scores,
                Int32(lb))
            for r in 0..<tb {
                let row = scores + r * lb
                let last = min(lb, pastLength + i0 + r + 1)
                if dense {
                    // QSTKernels' vector softmax (libm's accuracy): libm's scalar expf was a third of the
                    // attention's time in prompt processing.
                    qst_softmax_inplace(row, Int64(last), Int32(QST_VEC_AUTO.rawValue))
                } else {
                    var mx = -Float.infinity
                    for j in 0..<last where mask[j] != 0 { mx = max(mx, row[j]) }
                    if mx == -Float.infinity { for j in 0..<lb { row[j] = 0 }; continue }
                    var sum: Float = 0
                    for j in 0..<last {
                        let e: Float = mask[j] != 0 ? Foundation.exp(row[j] - mx) : 0
                        row[j] = e
                        sum += e
                    }
                    let inv = 1 / sum
                    for j in 0..<last { row[j] *= inv }
                }
                for j in last..<lb { row[j] = 0 }
            }
            cblas_sgemm(
                CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(tb), Int32(hd), Int32(lb),
                1, scores, Int32(lb), values, Int32(ldk), 0, out + i0 * ldq, Int32(ldq))
            i0 += tb
        }
    }

    /// Query rows per block of `causalRows`.
    private static let block = 64
}

/// Holds OpenBLAS at one thread for the duration of an engine forward and restores the previous count.
/// The engine then parallelises itself (matmul column ranges, attention heads) on `Parallel.forRanges`,
/// so OpenBLAS's idle workers do not spin against ours.
struct BLASThreadScope {
    let previous: Int32
    init() {
        previous = openblas_get_num_threads()
        if previous != 1 { openblas_set_num_threads(1) }
    }
    func restore() { if previous != 1 { openblas_set_num_threads(previous) } }
    static var isSingleThreaded: Bool { openblas_get_num_threads() == 1 }
}

/// What code outside the engine needs of `BLASThreadScope`.
public enum EngineBLAS {
    /// Runs `body` with OpenBLAS held at one thread, as everything called back from inside an engine forward runs
    /// (a hidden-state `visit`). Code that replays such callbacks from stored states uses it to get the same bits.
    public static func singleThreaded<T>(_ body: () throws -> T) rethrows -> T {
        let scope = BLASThreadScope()
        defer { scope.restore() }
        return try body()
    }
}
