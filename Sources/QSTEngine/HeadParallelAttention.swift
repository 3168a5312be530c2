import CBLAS
import Foundation
import QSTNN
import enum QSTCore.Parallel

/// Cached causal GQA attention with the (sequence, head) pairs spread over the workers, each calling
/// single-threaded BLAS. Same contract and numbers as `Attention.forwardCached`; used while the engine
/// holds BLAS at one thread (see `BLASThreadScope`), where QSTNN's per-head loop would run on one core.
enum HeadParallelAttention {
    static func forward(out: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>, kCache: UnsafePointer<Float>,
                        vCache: UnsafePointer<Float>, keyMask: UnsafePointer<UInt8>, batch: Int, newTokens: Int,
                        pastLength: Int, capacity: Int, nHeads: Int, nKVHeads: Int, headDim: Int, threads: Int) {
        let Tq = newTokens, L = pastLength + newTokens, hd = headDim
        guard Tq > 0 else { return }
        let ldq = nHeads * hd, ldk = nKVHeads * hd, group = nHeads / nKVHeads
        let scale = 1 / Float(hd).squareRoot()
        let o = SendablePointer(out), qs = SendablePointer(q), ks = SendablePointer(kCache)
        let vs = SendablePointer(vCache), ms = SendablePointer(keyMask)
        Parallel.forRanges(batch * nHeads, threads: threads, minChunk: 1) { p0, p1 in
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: Tq * L)
            defer { scores.deallocate() }
            for pair in p0..<p1 {
                let b = pair / nHeads, h = pair % nHeads, g = h / group
                let qh = qs.base + b * Tq * ldq + h * hd
                let kh = ks.base + b * capacity * ldk + g * hd
                let vh = vs.base + b * capacity * ldk + g * hd
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(Tq), Int32(L), Int32(hd),
                            scale, qh, Int32(ldq), kh, Int32(ldk), 0, scores, Int32(L))
                let mask = ms.base + b * capacity
                for i in 0..<Tq {
                    let row = scores + i * L
                    let last = min(L, pastLength + i + 1)
                    var mx = -Float.infinity
                    for j in 0..<last where mask[j] != 0 { mx = max(mx, row[j]) }
                    if mx == -Float.infinity { for j in 0..<L { row[j] = 0 }; continue }
                    var sum: Float = 0
                    for j in 0..<last {
                        let e: Float = mask[j] != 0 ? Foundation.exp(row[j] - mx) : 0
                        row[j] = e
                        sum += e
                    }
                    let inv = 1 / sum
                    for j in 0..<last { row[j] *= inv }
                    for j in last..<L { row[j] = 0 }
                }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(Tq), Int32(hd), Int32(L),
                            1, scores, Int32(L), vh, Int32(ldk), 0, o.base + b * Tq * ldq + h * hd, Int32(ldq))
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
