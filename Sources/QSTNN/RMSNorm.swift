import QSTCore

/// Hugging Face LLaMA RMSNorm: `y = x · rstd · w`, `rstd = 1/sqrt(mean(x²) + eps)`, computed per row in F32.
///
/// Shapes: `x, out [n, d]`, `weight [d]`, `rstd [n]` (saved for backward). `out` may alias `x` in forward.
public enum RMSNorm {
    public static func forward(
        out: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>?,
        x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        n: Int, d: Int, eps: Float
    ) {
        let o = SendablePointer(out), xs = SendablePointer(x), w = SendablePointer(weight)
        let rs = rstd.map { SendablePointer($0) }
        Parallel.forRanges(n, minChunk: 8) { r0, r1 in
            for r in r0..<r1 {
                let xr = xs + r * d, or = o + r * d
                var ss: Float = 0
                for j in 0..<d { ss += xr[j] * xr[j] }
                let s = 1 / (ss / Float(d) + eps).squareRoot()
                rs?[r] = s
                for j in 0..<d { or[j] = (xr[j] * s) * w[j] }
            }
        }
    }

    /// Accumulates `dx += ∂L/∂x` and `dweight += Σ_rows dy·x·rstd`, using the `rstd` saved by forward.
    public static func backward(
        dx: UnsafeMutablePointer<Float>?, dweight: UnsafeMutablePointer<Float>?,
        dout: UnsafePointer<Float>, x: UnsafePointer<Float>,
        weight: UnsafePointer<Float>, rstd: UnsafePointer<Float>, n: Int, d: Int
    ) {
        let dy = SendablePointer(dout), xs = SendablePointer(x), w = SendablePointer(weight)
        let rs = SendablePointer(rstd)
        if let dx {
            let g = SendablePointer(dx)
            Parallel.forRanges(n, minChunk: 8) { r0, r1 in
                for r in r0..<r1 {
                    let xr = xs + r * d, dyr = dy + r * d, gr = g + r * d
                    let s = rs[r]
                    var dot: Float = 0
                    for j in 0..<d { dot += dyr[j] * w[j] * xr[j] }
                    // d/dx of x·s where s = (mean x² + eps)^-1/2 contributes −s³·x·(Σ dy w x)/d.
                    let c = s * s * s * dot / Float(d)
                    for j in 0..<d { gr[j] += s * w[j] * dyr[j] - c * xr[j] }
                }
            }
        }
        if let dweight {
            RowReduce.run(rows: n, width: d, into: [SendablePointer(dweight)]) { r0, r1, acc in
                let a = acc[0]
                for r in r0..<r1 {
                    let xr = xs + r * d, dyr = dy + r * d
                    let s = rs[r]
                    for j in 0..<d { a[j] += dyr[j] * xr[j] * s }
                }
            }
        }
    }
}
