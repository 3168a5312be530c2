import Foundation
import QSTNN
import enum QSTCore.Parallel
import struct QSTCore.SendablePointer

extension FrozenModel {
    /// Rows of logits per head product when scoring: bounds the `[rows, vocab]` buffer (128 × 49 152 F32 = 24 MiB).
    static let scoringChunkRows = 128

    /// Calls `body(firstRow, rowCount, logits [rowCount, vocab])` over `rows` final hidden states, a chunk at a time,
    /// through the LM head with the configured matmul path.
    public func forEachLogitChunk(
        hidden: UnsafePointer<Float>, rows: Int,
        _ body: (Int, Int, UnsafePointer<Float>) throws -> Void
    ) rethrows {
        let chunk = Self.scoringChunkRows, V = vocabSize, d = headInputSize
        let logits = FloatBuffer(count: min(chunk, max(rows, 1)) * V)
        let head = headLinear
        let blas = BLASThreadScope()
        defer { blas.restore() }
        var r0 = 0
        while r0 < rows {
            let rn = min(chunk, rows - r0)
            head.forward(out: logits.pointer, x: hidden + r0 * d, n: rn, accumulate: false, context: context)
            try body(r0, rn, logits.constPointer)
            r0 += rn
        }
    }

    /// `log p(target[r] | row r)` for each row; rows whose target is negative get 0 and are skipped.
    public func targetLogProbs(hidden: UnsafePointer<Float>, rows: Int, targets: [Int32]) -> [Double] {
        precondition(targets.count == rows)
        var out = [Double](repeating: 0, count: rows)
        let V = vocabSize
        forEachLogitChunk(hidden: hidden, rows: rows) { r0, rn, logits in
            let lp = SendablePointer(logits)
            let results = UnsafeMutableBufferPointer<Double>.allocate(capacity: rn)
            defer { results.deallocate() }
            let res = SendablePointer(results.baseAddress!)
            let tg = targets
            Parallel.forRanges(rn, minChunk: 4) { a, b in
                for i in a..<b {
                    let target = tg[r0 + i]
                    guard target >= 0 else { res[i] = 0; continue }
                    res[i] = LogSoftmaxRow.logProb(lp.base + i * V, count: V, index: Int(target))
                }
            }
            for i in 0..<rn { out[r0 + i] = results[i] }
        }
        return out
    }
}

/// Numerically stable log-softmax pieces over one row of logits, accumulated in Double.
public enum LogSoftmaxRow {
    public static func logSumExp(_ row: UnsafePointer<Float>, count: Int) -> Double {
        var mx = -Float.infinity
        for j in 0..<count { mx = max(mx, row[j]) }
        var sum = 0.0
        for j in 0..<count { sum += Foundation.exp(Double(row[j] - mx)) }
        return Double(mx) + Foundation.log(sum)
    }

    public static func logProb(_ row: UnsafePointer<Float>, count: Int, index: Int) -> Double {
        Double(row[index]) - logSumExp(row, count: count)
    }
}
