import QSTCore

/// Pooling over consecutive groups of `r` features: `x [n, d]` → `out [n, d/r]` (QST's downsampler).
/// Requires `d % r == 0`.
public enum FeaturePool {
    public enum Kind: String, Sendable { case average, max }

    public static func forward(
        out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>,
        n: Int, d: Int, r: Int, kind: Kind
    ) {
        precondition(r > 0 && d % r == 0, "pool factor must divide the feature count")
        let dOut = d / r
        let o = SendablePointer(out), xs = SendablePointer(x)
        let inv = 1 / Float(r)
        Parallel.forRanges(n, minChunk: 16) { r0, r1 in
            for row in r0..<r1 {
                let xr = xs + row * d, or = o + row * dOut
                for g in 0..<dOut {
                    let base = xr + g * r
                    switch kind {
                    case .average:
                        var s: Float = 0
                        for j in 0..<r { s += base[j] }
                        or[g] = s * inv
                    case .max:
                        var m = base[0]
                        for j in 1..<r { m = max(m, base[j]) }
                        or[g] = m
                    }
                }
            }
        }
    }

    /// `dx += ∂out/∂x · dout`. For max pooling the gradient goes to the first maximal element of each group.
    public static func backward(
        dx: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, x: UnsafePointer<Float>,
        n: Int, d: Int, r: Int, kind: Kind
    ) {
        let dOut = d / r
        let g = SendablePointer(dx), dy = SendablePointer(dout), xs = SendablePointer(x)
        let inv = 1 / Float(r)
        Parallel.forRanges(n, minChunk: 16) { r0, r1 in
            for row in r0..<r1 {
                let xr = xs + row * d, gr = g + row * d, dyr = dy + row * dOut
                for k in 0..<dOut {
                    switch kind {
                    case .average:
                        let v = dyr[k] * inv
                        for j in 0..<r { gr[k * r + j] += v }
                    case .max:
                        var best = 0
                        for j in 1..<r where xr[k * r + j] > xr[k * r + best] { best = j }
                        gr[k * r + best] += dyr[k]
                    }
                }
            }
        }
    }
}
