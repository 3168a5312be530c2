import Foundation
import QSTCore

/// Row-wise softmax helpers and argmax over `[n, d]` rows.
public enum Softmax {
    /// In place, numerically stable softmax of each of the `n` rows of length `d`.
    public static func forward(_ x: UnsafeMutablePointer<Float>, n: Int, d: Int) {
        let xs = SendablePointer(x)
        Parallel.forRanges(n, minChunk: 4) { a, b in
            for r in a..<b {
                let row = xs + r * d
                var mx = -Float.infinity
                for j in 0..<d { mx = max(mx, row[j]) }
                var sum: Float = 0
                for j in 0..<d { let e = Foundation.exp(row[j] - mx); row[j] = e; sum += e }
                let inv = 1 / sum
                for j in 0..<d { row[j] *= inv }
            }
        }
    }

    /// `dx += y ⊙ (dy − Σ y·dy)` per row, where `y` is the softmax output.
    public static func backward(
        dx: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, y: UnsafePointer<Float>,
        n: Int, d: Int
    ) {
        let g = SendablePointer(dx), dy = SendablePointer(dout), ys = SendablePointer(y)
        Parallel.forRanges(n, minChunk: 4) { a, b in
            for r in a..<b {
                let yr = ys + r * d, dyr = dy + r * d, gr = g + r * d
                var dot: Float = 0
                for j in 0..<d { dot += yr[j] * dyr[j] }
                for j in 0..<d { gr[j] += yr[j] * (dyr[j] - dot) }
            }
        }
    }

    /// In place log-softmax of each row.
    public static func logSoftmax(_ x: UnsafeMutablePointer<Float>, n: Int, d: Int) {
        for r in 0..<n {
            let row = x + r * d
            var mx = -Float.infinity
            for j in 0..<d { mx = max(mx, row[j]) }
            var sum = 0.0
            for j in 0..<d { sum += Double(Foundation.exp(row[j] - mx)) }
            let lse = mx + Float(Foundation.log(sum))
            for j in 0..<d { row[j] -= lse }
        }
    }

    /// Index of the largest element (the first one on ties); -1 when `d == 0`.
    public static func argmax(_ x: UnsafePointer<Float>, d: Int) -> Int {
        guard d > 0 else { return -1 }
        var best = 0
        for j in 1..<d where x[j] > x[best] { best = j }
        return best
    }

    /// Argmax of each row into `out [n]`.
    public static func argmaxRows(out: UnsafeMutablePointer<Int32>, x: UnsafePointer<Float>, n: Int, d: Int) {
        for r in 0..<n { out[r] = Int32(argmax(x + r * d, d: d)) }
    }
}
