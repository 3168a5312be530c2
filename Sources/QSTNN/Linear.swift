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
    public static func forward(out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>,
                               weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                               n: Int, inFeatures: Int, outFeatures: Int, accumulate: Bool = false) {
        guard n > 0, outFeatures > 0 else { return }
        if inFeatures == 0 {
            if !accumulate { out.update(repeating: 0, count: n * outFeatures) }
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans,
                        Int32(n), Int32(outFeatures), Int32(inFeatures),
                        1, x, Int32(inFeatures), weight, Int32(inFeatures),
                        accumulate ? 1 : 0, out, Int32(outFeatures))
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

    /// Accumulates `dx += dy · W`, `dweight += dyᵀ · x`, `dbias += Σ_rows dy`.
    /// Pass nil for gradients that are not needed (frozen weights, first layer).
    public static func backward(dx: UnsafeMutablePointer<Float>?, dweight: UnsafeMutablePointer<Float>?,
                                dbias: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>,
                                x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                n: Int, inFeatures: Int, outFeatures: Int) {
        guard n > 0, outFeatures > 0 else { return }
        if let dx, inFeatures > 0 {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans,
                        Int32(n), Int32(inFeatures), Int32(outFeatures),
                        1, dout, Int32(outFeatures), weight, Int32(inFeatures),
                        1, dx, Int32(inFeatures))
        }
        if let dweight, inFeatures > 0 {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans,
                        Int32(outFeatures), Int32(inFeatures), Int32(n),
                        1, dout, Int32(outFeatures), x, Int32(inFeatures),
                        1, dweight, Int32(inFeatures))
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
