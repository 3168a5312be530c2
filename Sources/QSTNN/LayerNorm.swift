import QSTCore

/// LayerNorm over the last dimension with affine weight and bias (PyTorch `nn.LayerNorm`, biased variance).
///
/// Shapes: `x, out [n, d]`, `weight, bias [d]`, `mean, rstd [n]` (saved for backward).
public enum LayerNorm {
    public static func forward(
        out: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>?,
        rstd: UnsafeMutablePointer<Float>?, x: UnsafePointer<Float>,
        weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
        n: Int, d: Int, eps: Float
    ) {
        let o = SendablePointer(out), xs = SendablePointer(x), w = SendablePointer(weight)
        let b = bias.map { SendablePointer($0) }
        let ms = mean.map { SendablePointer($0) }, rs = rstd.map { SendablePointer($0) }
        Parallel.forRanges(n, minChunk: 8) { r0, r1 in
            for r in r0..<r1 {
                let xr = xs + r * d, or = o + r * d
                var sum: Float = 0
                for j in 0..<d { sum += xr[j] }
                let m = sum / Float(d)
                var v: Float = 0
                for j in 0..<d { let c = xr[j] - m; v += c * c }
                let s = 1 / (v / Float(d) + eps).squareRoot()
                ms?[r] = m
                rs?[r] = s
                for j in 0..<d { or[j] = (xr[j] - m) * s * w[j] + (b?[j] ?? 0) }
            }
        }
    }

    /// Accumulates `dx`, `dweight`, `dbias` (any may be nil) from the saved `mean` and `rstd`.
    public static func backward(
        dx: UnsafeMutablePointer<Float>?, dweight: UnsafeMutablePointer<Float>?,
        dbias: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>,
        x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, n: Int, d: Int
    ) {
        let dy = SendablePointer(dout), xs = SendablePointer(x), w = SendablePointer(weight)
        let ms = SendablePointer(mean), rs = SendablePointer(rstd)
        if let dx {
            let g = SendablePointer(dx)
            Parallel.forRanges(n, minChunk: 8) { r0, r1 in
                for r in r0..<r1 {
                    let xr = xs + r * d, dyr = dy + r * d, gr = g + r * d
                    let m = ms[r], s = rs[r]
                    var meanDn: Float = 0, meanDnX: Float = 0
                    for j in 0..<d {
                        let dn = dyr[j] * w[j]
                        meanDn += dn
                        meanDnX += dn * (xr[j] - m) * s
                    }
                    meanDn /= Float(d)
                    meanDnX /= Float(d)
                    for j in 0..<d {
                        let xhat = (xr[j] - m) * s
                        gr[j] += s * (dyr[j] * w[j] - meanDn - xhat * meanDnX)
                    }
                }
            }
        }
        var targets: [SendablePointer<Float>] = []
        if let dweight { targets.append(SendablePointer(dweight)) }
        if let dbias { targets.append(SendablePointer(dbias)) }
        guard !targets.isEmpty else { return }
        let hasW = dweight != nil, hasB = dbias != nil
        RowReduce.run(rows: n, width: d, into: targets) { r0, r1, acc in
            for r in r0..<r1 {
                let xr = xs + r * d, dyr = dy + r * d
                let m = ms[r], s = rs[r]
                if hasW { let a = acc[0]; for j in 0..<d { a[j] += dyr[j] * (xr[j] - m) * s } }
                if hasB { let a = acc[hasW ? 1 : 0]; for j in 0..<d { a[j] += dyr[j] } }
            }
        }
    }
}
