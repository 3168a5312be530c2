import Foundation
import QSTCore

/// QST's learnable gate between two streams: `out = (1 − σ(z))·a + σ(z)·b` with one logit `z` per feature.
/// Shapes: `a, b, out [n, d]`, `z [d]`.
public enum GatedMix {
    @inline(__always) static func sigmoid(_ x: Float) -> Float { 1 / (1 + Foundation.exp(-x)) }

    public static func forward(
        out: UnsafeMutablePointer<Float>, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
        z: UnsafePointer<Float>, n: Int, d: Int
    ) {
        let s = (0..<d).map { sigmoid(z[$0]) }
        let o = SendablePointer(out), ap = SendablePointer(a), bp = SendablePointer(b)
        Parallel.forRanges(n, minChunk: 16) { r0, r1 in
            for r in r0..<r1 {
                let ar = ap + r * d, br = bp + r * d, or = o + r * d
                for j in 0..<d { or[j] = (1 - s[j]) * ar[j] + s[j] * br[j] }
            }
        }
    }

    /// Accumulates `da += (1−σ)·dout`, `db += σ·dout`, `dz += Σ_rows dout·(b − a)·σ(1−σ)`; any may be nil.
    public static func backward(
        da: UnsafeMutablePointer<Float>?, db: UnsafeMutablePointer<Float>?,
        dz: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>,
        a: UnsafePointer<Float>, b: UnsafePointer<Float>, z: UnsafePointer<Float>,
        n: Int, d: Int
    ) {
        let s = (0..<d).map { sigmoid(z[$0]) }
        let dy = SendablePointer(dout), ap = SendablePointer(a), bp = SendablePointer(b)
        if da != nil || db != nil {
            let dap = da.map { SendablePointer($0) }, dbp = db.map { SendablePointer($0) }
            Parallel.forRanges(n, minChunk: 16) { r0, r1 in
                for r in r0..<r1 {
                    let dyr = dy + r * d
                    if let dap { let g = dap + r * d; for j in 0..<d { g[j] += (1 - s[j]) * dyr[j] } }
                    if let dbp { let g = dbp + r * d; for j in 0..<d { g[j] += s[j] * dyr[j] } }
                }
            }
        }
        if let dz {
            RowReduce.run(rows: n, width: d, into: [SendablePointer(dz)]) { r0, r1, acc in
                let g = acc[0]
                for r in r0..<r1 {
                    let dyr = dy + r * d, ar = ap + r * d, br = bp + r * d
                    for j in 0..<d { g[j] += dyr[j] * (br[j] - ar[j]) * s[j] * (1 - s[j]) }
                }
            }
        }
    }
}

/// QST's residual head mix: `out = b + (1 − σ(z))·a`, one logit `z` per feature. With `a = 0` the output is
/// `b` bit for bit (`x + 0 = x` in IEEE arithmetic), which is how a side network starts as its base model.
public enum ResidualGatedMix {
    public static func forward(
        out: UnsafeMutablePointer<Float>, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
        z: UnsafePointer<Float>, n: Int, d: Int
    ) {
        let s = (0..<d).map { 1 - GatedMix.sigmoid(z[$0]) }
        let o = SendablePointer(out), ap = SendablePointer(a), bp = SendablePointer(b)
        Parallel.forRanges(n, minChunk: 16) { r0, r1 in
            for r in r0..<r1 {
                let ar = ap + r * d, br = bp + r * d, or = o + r * d
                for j in 0..<d { or[j] = br[j] + s[j] * ar[j] }
            }
        }
    }

    /// Accumulates `da += (1−σ)·dout`, `db += dout`, `dz −= Σ_rows dout·a·σ(1−σ)`; any may be nil.
    public static func backward(
        da: UnsafeMutablePointer<Float>?, db: UnsafeMutablePointer<Float>?,
        dz: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>,
        a: UnsafePointer<Float>, z: UnsafePointer<Float>, n: Int, d: Int
    ) {
        let s = (0..<d).map { GatedMix.sigmoid(z[$0]) }
        let dy = SendablePointer(dout), ap = SendablePointer(a)
        if da != nil || db != nil {
            let dap = da.map { SendablePointer($0) }, dbp = db.map { SendablePointer($0) }
            Parallel.forRanges(n, minChunk: 16) { r0, r1 in
                for r in r0..<r1 {
                    let dyr = dy + r * d
                    if let dap { let g = dap + r * d; for j in 0..<d { g[j] += (1 - s[j]) * dyr[j] } }
                    if let dbp { let g = dbp + r * d; for j in 0..<d { g[j] += dyr[j] } }
                }
            }
        }
        if let dz {
            RowReduce.run(rows: n, width: d, into: [SendablePointer(dz)]) { r0, r1, acc in
                let g = acc[0]
                for r in r0..<r1 {
                    let dyr = dy + r * d, ar = ap + r * d
                    for j in 0..<d { g[j] -= dyr[j] * ar[j] * s[j] * (1 - s[j]) }
                }
            }
        }
    }
}
