import Foundation
import QSTEngine
import QSTFormat

/// One evaluation window: tokens `begin..<end` run through the model; predictions of tokens
/// `firstScored..<end` count (each from the position before it).
public struct EvaluationWindow: Codable, Sendable, Equatable {
    public var begin: Int
    public var end: Int
    public var firstScored: Int

    /// Hugging Face's strided perplexity: windows of `ctx` tokens starting every `stride` tokens; each scores
    /// only the tokens the previous window did not, so every token but the first is scored exactly once.
    public static func plan(tokenCount n: Int, ctx: Int, stride: Int) throws -> [EvaluationWindow] {
        guard ctx >= 2 else { throw QSTError("--ctx \(ctx) must be at least 2") }
        guard stride >= 1, stride <= ctx else { throw QSTError("--stride \(stride) must be in 1...ctx (\(ctx))") }
        guard n >= 2 else { throw QSTError("the text has \(n) token(s); at least 2 are needed") }
        var out: [EvaluationWindow] = []
        var begin = 0, prevEnd = 0
        while true {
            let end = min(begin + ctx, n)
            let first = max(prevEnd, begin + 1)
            if first < end { out.append(EvaluationWindow(begin: begin, end: end, firstScored: first)) }
            prevEnd = end
            if end == n { break }
            begin += stride
        }
        return out
    }
}

public struct WindowScore: Codable, Sendable {
    public var begin: Int
    public var end: Int
    public var scored: Int
    public var nll: Double
    public var perplexity: Double
}

public struct PerplexityResult: Codable, Sendable {
    public var tokens: Int
    public var scored: Int
    public var meanNLL: Double
    public var perplexity: Double
    public var seconds: Double
    /// Tokens run through the model per second (window lengths summed, overlap included).
    public var tokensPerSecond: Double
    public var windows: [WindowScore]
}

public enum Perplexity {
    /// Runs the windows `batch` at a time (right-padded) and scores them.
    public static func evaluate(
        model: FrozenModel, tokens: [Int32], ctx: Int, stride: Int? = nil, batch: Int = 1,
        progress: (Int, Int) -> Void = { _, _ in }
    ) throws -> PerplexityResult {
        let windows = try EvaluationWindow.plan(tokenCount: tokens.count, ctx: ctx, stride: stride ?? ctx)
        guard batch >= 1 else { throw QSTError("--batch \(batch) must be at least 1") }
        let start = Date()
        var scores: [WindowScore] = []
        var processed = 0
        var i = 0
        while i < windows.count {
            let group = Array(windows[i..<min(windows.count, i + batch)])
            let logProbs = try scoreWindows(model: model, tokens: tokens, windows: group)
            for (w, lp) in zip(group, logProbs) {
                let nll = -lp.reduce(0, +)
                let scored = lp.count
                scores.append(
                    WindowScore(
                        begin: w.begin, end: w.end, scored: scored, nll: nll,
                        perplexity: Foundation.exp(nll / Double(max(1, scored)))))
                processed += w.end - w.begin
            }
            i += group.count
            progress(i, windows.count)
        }
        let seconds = Date().timeIntervalSince(start)
        let scored = scores.reduce(0) { $0 + $1.scored }
        let nll = scores.reduce(0) { $0 + $1.nll } / Double(max(1, scored))
        return PerplexityResult(
            tokens: tokens.count, scored: scored, meanNLL: nll, perplexity: Foundation.exp(nll),
            seconds: seconds, tokensPerSecond: Double(processed) / max(seconds, 1e-9),
            windows: scores)
    }

    /// Log-probabilities of each window's scored tokens, in order.
    static func scoreWindows(model: FrozenModel, tokens: [Int32], windows: [EvaluationWindow]) throws -> [[Double]] {
        let seqs = windows.map { Array(tokens[$0.begin..<$0.end]) }
        let batch = TokenBatch(sequences: seqs)
        let T = batch.seqLen
        let hidden = try model.forward(
            ids: batch.ids, batch: batch.batch, newTokens: T,
            valid: validMask(batch))
        var targets = [Int32](repeating: -1, count: batch.batch * T)
        for (b, w) in windows.enumerated() {
            for p in w.firstScored..<w.end { targets[b * T + (p - 1 - w.begin)] = tokens[p] }
        }
        let lp = model.targetLogProbs(hidden: hidden.constPointer, rows: batch.batch * T, targets: targets)
        return windows.enumerated().map { b, w in
            (w.firstScored..<w.end).map { p in lp[b * T + (p - 1 - w.begin)] }
        }
    }

    static func validMask(_ batch: TokenBatch) -> [UInt8] {
        var m = [UInt8](repeating: 0, count: batch.ids.count)
        for (b, len) in batch.lengths.enumerated() { for t in 0..<len { m[b * batch.seqLen + t] = 1 } }
        return m
    }
}
