import QSTCore

/// Elementwise helpers for residual streams and gradient plumbing. All arrays are flat, length `count`.
public enum VectorOps {
    /// `out = a + b` (`out` may alias either input).
    public static func add(
        out: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
        count: Int
    ) {
        let o = SendablePointer(out), ap = SendablePointer(a), bp = SendablePointer(b)
        Parallel.forRanges(count, minChunk: 16384) { s, e in for i in s..<e { o[i] = ap[i] + bp[i] } }
    }

    /// `y += alpha · x`.
    public static func axpy(_ y: UnsafeMutablePointer<Float>, alpha: Float, _ x: UnsafePointer<Float>, count: Int) {
        let yp = SendablePointer(y), xp = SendablePointer(x)
        Parallel.forRanges(count, minChunk: 16384) { s, e in for i in s..<e { yp[i] += alpha * xp[i] } }
    }

    /// `x *= alpha`.
    public static func scale(_ x: UnsafeMutablePointer<Float>, by alpha: Float, count: Int) {
        let xp = SendablePointer(x)
        Parallel.forRanges(count, minChunk: 16384) { s, e in for i in s..<e { xp[i] *= alpha } }
    }

    /// Fills `x` with independent N(mean, std²) draws from `rng` (for weight initialisation).
    public static func fillGaussian(
        _ x: UnsafeMutablePointer<Float>, count: Int, mean: Float = 0, std: Float,
        rng: inout SplitMix64
    ) {
        for i in 0..<count { x[i] = mean + std * rng.nextGaussian() }
    }
}
