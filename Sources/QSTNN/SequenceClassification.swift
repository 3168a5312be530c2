import Foundation

/// A linear sequence-classification head `z = W·o + b` (`W [K, d]`, `b [K]`) read at chosen rows of the
/// hidden states, with its loss: cross-entropy over K ≥ 2 classes, or squared error for K = 1 (regression),
/// as Hugging Face's `…ForSequenceClassification` (`single_label_classification` / `regression`).
/// K is tiny (2–3 for GLUE), so plain loops beat a GEMM call here.
public enum SequenceClassification {
    /// `out [m, K]` = head logits of `m` rows of `hidden` (row indices `rows`, width `d`).
    public static func logits(
        out: UnsafeMutablePointer<Float>, hidden: UnsafePointer<Float>, rows: [Int], d: Int,
        weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, k: Int
    ) {
        for (r, row) in rows.enumerated() {
            let x = hidden + row * d
            for c in 0..<k {
                let w = weight + c * d
                var s: Float = 0
                for j in 0..<d { s += w[j] * x[j] }
                out[r * k + c] = s + bias[c]
            }
        }
    }

    /// Loss at the rows where `labels[i] != ignoreIndex`: for K ≥ 2 `labels[i]` is the class; for K = 1
    /// the target is `targets[i]` and the loss `(z − t)²`. Gradients (scaled by `gradScale`, default
    /// 1/count) are ADDED to `dHidden`, `dWeight` and `dBias` when given.
    /// - Throws: `QSTError` for a class outside `0..<K` (`labelOutOfRange`) or K = 1 without targets
    ///   (`invalidArgument`).
    public static func lossAndGradient(
        hidden: UnsafePointer<Float>, labels: UnsafePointer<Int32>,
        targets: UnsafePointer<Float>?, n: Int, d: Int,
        weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, k: Int,
        dHidden: UnsafeMutablePointer<Float>?, dWeight: UnsafeMutablePointer<Float>?,
        dBias: UnsafeMutablePointer<Float>?,
        gradScale: Float? = nil
    ) throws -> ChunkedCrossEntropy.Result {
        guard k >= 1 else { throw QSTError("classification head: K = \(k) labels", kind: .invalidArgument) }
        if k == 1, targets == nil {
            throw QSTError("classification head: regression (K = 1) needs float targets", kind: .invalidArgument)
        }
        var rows: [Int] = []
        for i in 0..<n where labels[i] != ChunkedCrossEntropy.ignoreIndex {
            if k >= 2, labels[i] < 0 || Int(labels[i]) >= k {
                throw QSTError(
                    "classification head: label \(labels[i]) at position \(i) is outside 0..<\(k)",
                    kind: .labelOutOfRange)
            }
            rows.append(i)
        }
        guard !rows.isEmpty else { return .init(lossSum: 0, count: 0) }
        let scale = gradScale ?? 1 / Float(rows.count)
        var z = [Float](repeating: 0, count: rows.count * k)
        z.withUnsafeMutableBufferPointer {
            logits(out: $0.baseAddress!, hidden: hidden, rows: rows, d: d, weight: weight, bias: bias, k: k)
        }
        var lossSum = 0.0
        var dz = [Float](repeating: 0, count: k)
        for (r, row) in rows.enumerated() {
            let zr = Array(z[r * k..<(r + 1) * k])
            if k == 1 {
                let diff = Double(zr[0]) - Double(targets![row])
                lossSum += diff * diff
                dz[0] = Float(2 * diff) * scale
            } else {
                let y = Int(labels[row])
                let mx = zr.max() ?? 0
                var sum = 0.0
                for c in 0..<k { sum += Foundation.exp(Double(zr[c] - mx)) }
                lossSum += Double(mx) + Foundation.log(sum) - Double(zr[y])
                for c in 0..<k { dz[c] = Float(Foundation.exp(Double(zr[c] - mx)) / sum) * scale }
                dz[y] -= scale
            }
            let x = hidden + row * d
            for c in 0..<k {
                let g = dz[c], w = weight + c * d
                if let dWeight { let dw = dWeight + c * d; for j in 0..<d { dw[j] += g * x[j] } }
                if let dBias { dBias[c] += g }
                if let dHidden { let dx = dHidden + row * d; for j in 0..<d { dx[j] += g * w[j] } }
            }
        }
        return .init(lossSum: lossSum, count: rows.count)
    }
}
