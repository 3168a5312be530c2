import QSTCore

/// Token embedding lookup: `out[i] = table[ids[i]]`. Shapes: `table [vocab, d]`, `ids [n]`, `out [n, d]`.
public enum Embedding {
    /// - Throws: `QSTError` (`tokenOutOfRange`) naming the position when an id is outside `0..<vocab`.
    public static func forward(
        out: UnsafeMutablePointer<Float>, ids: UnsafePointer<Int32>, n: Int,
        table: UnsafePointer<Float>, vocab: Int, d: Int
    ) throws {
        for i in 0..<n where ids[i] < 0 || Int(ids[i]) >= vocab {
            throw QSTError(
                "embedding: token id \(ids[i]) at position \(i) is outside vocabulary 0..<\(vocab)",
                kind: .tokenOutOfRange)
        }
        let o = SendablePointer(out), t = SendablePointer(table), ip = SendablePointer(ids)
        Parallel.forRanges(n, minChunk: 32) { a, b in
            for i in a..<b { (o + i * d).base.update(from: (t + Int(ip[i]) * d).base, count: d) }
        }
    }

    /// `dtable[ids[i]] += dout[i]` (sequential, ids may repeat). Ids must have passed `forward`.
    public static func backward(
        dtable: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
        ids: UnsafePointer<Int32>, n: Int, d: Int
    ) {
        for i in 0..<n {
            let dst = dtable + Int(ids[i]) * d, src = dout + i * d
            for j in 0..<d { dst[j] += src[j] }
        }
    }
}
