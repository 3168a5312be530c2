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
        // Query rows go in blocks so each block multiplies only the keys it may see (causal: about half the work).
        let block = 64
        let denseMask = (0..<batch).map { b in (0..<L).allSatisfy { keyMask[b * capacity + $0] != 0 } }
        // Short decodes are too little work to wake the workers for (see OutputSplit.minParallelMACs).
        let workers = batch * nHeads * Tq * L * hd < OutputSplit.minParallelMACs ? 1 : threads
        Parallel.forRanges(batch * nHeads, threads: workers, minChunk: 1) { p0, p1 in
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: min(block, Tq) * L)
            defer { scores.deallocate() }
            for pair in p0..<p1 {
                let b = pair / nHeads, h = pair % nHeads, g = h / group
                let kh = ks.base + b * capacity * ldk + g * hd
                let vh = vs.base + b * capacity * ldk + g * hd
                let mask = ms.base + b * capacity
                let rows = realRows?[b] ?? Tq
                let dense = realRows != nil || denseMask[b]
                var i0 = 0
                while i0 < rows {
                    let tb = min(block, rows - i0), lb = min(realRows == nil ? L : rows, pastLength + i0 + tb)
                    let qh = qs.base + (b * Tq + i0) * ldq + h * hd
                    cblas_sgemm(
                        CblasRowMajor, CblasNoTrans, CblasTrans, Int32(tb), Int32(lb), Int32(hd),
                        scale, qh, Int32(ldq), kh, Int32(ldk), 0, scores, Int32(lb))
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
                        1, scores, Int32(lb), vh, Int32(ldk), 0, o.base + (b * Tq + i0) * ldq + h * hd, Int32(ldq))
                    i0 += tb
                }
                for i in rows..<Tq { (o.base + (b * Tq + i) * ldq + h * hd).update(repeating: 0, count: hd) }
            }
        }
    }
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
