import CBLAS
import QSTCore

/// Fully connected layer in PyTorch layout: `y = x · Wᵀ + b`.
///
/// Shapes: `x [n, inF]`, `weight [outF, inF]`, `bias [outF]`, `y [n, outF]`, all row-major F32.
/// Gradient convention (used by every QSTNN op): backward ADDS into all gradient buffers (`+=`);
/// callers zero them when a fresh gradient is wanted.
public enum Linear {
    /// `out = x · Wᵀ (+ bias)`. When `accumulate` is true the product is added to `out` instead
    /// (handy for residual connections).
    public static func forward(
        out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>,
        weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
        n: Int, inFeatures: Int, outFeatures: Int, accumulate: Bool = false
    ) {
        guard n > 0, outFeatures > 0 else { return }
        if inFeatures == 0 {
            if !accumulate { out.update(repeating: 0, count: n * outFeatures) }
        } else {
            let xs = SendablePointer(x), o = SendablePointer(out), w = SendablePointer(weight)
            splitRows(n, macs: n * inFeatures * outFeatures) { r0, r1 in
                cblas_sgemm(
                    CblasRowMajor, CblasNoTrans, CblasTrans,
                    Int32(r1 - r0), Int32(outFeatures), Int32(inFeatures),
                    1, (xs + r0 * inFeatures).base, Int32(inFeatures), w.base, Int32(inFeatures),
                    accumulate ? 1 : 0, (o + r0 * outFeatures).base, Int32(outFeatures))
            }
        }
        guard let bias else { return }
        let o = SendablePointer(out), b = SendablePointer(bias)
        Parallel.forRanges(n, minChunk: 64) { r0, r1 in
            for r in r0..<r1 {
                let row = o + r * outFeatures
                for j in 0..<outFeatures { row[j] += b[j] }
            }
        }
    }

    /// Runs `body` over `0..<count` in one piece, or — when OpenBLAS is held at one thread (inside the
    /// engine's forward, and for the whole side-network training step, so that OpenBLAS's idle workers do
    /// not spin against the pool's) and the product has at least `minSplitMACs` multiply-adds — in one
    /// piece per worker, each a single-threaded BLAS call.
    static func splitRows(_ count: Int, macs: Int, _ body: @Sendable (Int, Int) -> Void) {
        if macs >= minSplitMACs, openblas_get_num_threads() == 1 {
            Parallel.forRanges(count, minChunk: 16, body)
        } else {
            body(0, count)
        }
    }

    /// Below this a product is too short to pay for waking a worker (about 0.1 ms on one core).
    static let minSplitMACs = 1 << 20

    /// Accumulates `dx += dy · W`, `dweight += dyᵀ · x`, `dbias += Σ_rows dy`.
    /// Pass nil for gradients that are not needed (frozen weights, first layer).
    public static func backward(
        dx: UnsafeMutablePointer<Float>?, dweight: UnsafeMutablePointer<Float>?,
        dbias: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>,
        x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        n: Int, inFeatures: Int, outFeatures: Int
    ) {
        guard n > 0, outFeatures > 0 else { return }
        if let dx, inFeatures > 0 {
            let dy = SendablePointer(dout), g = SendablePointer(dx), w = SendablePointer(weight)
            splitRows(n, macs: n * inFeatures * outFeatures) { r0, r1 in
                cblas_sgemm(
                    CblasRowMajor, CblasNoTrans, CblasNoTrans,
                    Int32(r1 - r0), Int32(inFeatures), Int32(outFeatures),
                    1, (dy + r0 * outFeatures).base, Int32(outFeatures), w.base, Int32(inFeatures),
                    1, (g + r0 * inFeatures).base, Int32(inFeatures))
            }
        }
        if let dweight, inFeatures > 0 {
            // Split over output features: each part owns its rows of dweight, summed over all n rows.
            let dy = SendablePointer(dout), xs = SendablePointer(x), g = SendablePointer(dweight)
            splitRows(outFeatures, macs: n * inFeatures * outFeatures) { o0, o1 in
                cblas_sgemm(
                    CblasRowMajor, CblasTrans, CblasNoTrans,
                    Int32(o1 - o0), Int32(inFeatures), Int32(n),
                    1, (dy + o0).base, Int32(outFeatures), xs.base, Int32(inFeatures),
                    1, (g + o0 * inFeatures).base, Int32(inFeatures))
            }
        }
        if let dbias {
            let dy = SendablePointer(dout)
            RowReduce.run(rows: n, width: outFeatures, into: [SendablePointer(dbias)]) { r0, r1, acc in
                let a = acc[0]
                for r in r0..<r1 {
                    let row = dy + r * outFeatures
                    for j in 0..<outFeatures { a[j] += row[j] }
                }
            }
        }
    }
}
