import QSTCore

/// Inverted dropout: kept elements are scaled by `1/(1−p)`, so evaluation needs no rescaling.
/// Shapes: `x, out, mask, dx, dout` are flat arrays of `count`.
public enum Dropout {
    /// Draws the keep-mask from `rng` (consuming exactly `count` outputs; none when `p == 0`, where
    /// this is the identity with an all-ones mask). `out` may alias `x`. Element `i` uses the `(i+1)`-th
    /// output from the current state, so results do not depend on the thread count.
    public static func forward(
        out: UnsafeMutablePointer<Float>, mask: UnsafeMutablePointer<UInt8>,
        x: UnsafePointer<Float>, count: Int, p: Float, rng: inout SplitMix64
    ) {
        precondition(p >= 0 && p < 1, "dropout probability must be in [0, 1)")
        let o = SendablePointer(out), xs = SendablePointer(x), m = SendablePointer(mask)
        if p == 0 {
            Parallel.forRanges(count, minChunk: 8192) { a, b in
                for i in a..<b { o[i] = xs[i]; m[i] = 1 }
            }
            return
        }
        let scale = 1 / (1 - p)
        let start = rng
        Parallel.forRanges(count, minChunk: 8192) { a, b in
            for i in a..<b {
                let keep = SplitMix64.unitFloat(start.peek(i + 1)) >= p
                m[i] = keep ? 1 : 0
                o[i] = keep ? xs[i] * scale : 0
            }
        }
        rng.advance(by: count)
    }

    /// `dx += dout · mask / (1−p)`.
    public static func backward(
        dx: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
        mask: UnsafePointer<UInt8>, count: Int, p: Float
    ) {
        let scale = 1 / (1 - p)
        let g = SendablePointer(dx), dy = SendablePointer(dout), m = SendablePointer(mask)
        Parallel.forRanges(count, minChunk: 8192) { a, b in
            for i in a..<b where m[i] != 0 { g[i] += dy[i] * scale }
        }
    }
}
