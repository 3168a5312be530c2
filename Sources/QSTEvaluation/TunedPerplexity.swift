import Foundation
import QSTEngine
import QSTSide
import QSTFormat
import QSTNN

/// Perplexity of one side network's tuned model over a text.
public struct TunedPerplexityResult: Codable, Sendable {
    public var side: String
    public var tokens: Int
    public var scored: Int
    public var meanNLL: Double
    public var perplexity: Double
}

/// Strided perplexity (the windows of `EvaluationWindow.plan`, as `Perplexity.evaluate`) for every side
/// network at once: each window runs through the base once and every side network reads it.
public enum TunedPerplexity {
    public static func evaluate(
        model: TunedModel, names: [String], tokens: [Int32], ctx: Int, stride: Int? = nil,
        batch: Int = 1, progress: (Int, Int) -> Void = { _, _ in }
    ) throws
        -> (results: [TunedPerplexityResult], seconds: Double, tokensPerSecond: Double)
    {
        let windows = try EvaluationWindow.plan(tokenCount: tokens.count, ctx: ctx, stride: stride ?? ctx)
        guard batch >= 1 else { throw QSTError("--batch \(batch) must be at least 1") }
        let k = model.sides.count
        var nll = [Double](repeating: 0, count: k)
        var scored = 0, processed = 0
        let start = Date()
        var i = 0
        while i < windows.count {
            let group = Array(windows[i..<min(windows.count, i + batch)])
            let seqs = group.map { Array(tokens[$0.begin..<$0.end]) }
            let tb = TokenBatch(sequences: seqs)
            let T = tb.seqLen
            let valid = Attention.maskFromLengths(tb.lengths, seqLen: T)
            let step = try model.forward(ids: tb.ids, batch: tb.batch, newTokens: T, valid: valid)
            var targets = [Int32](repeating: -1, count: tb.batch * T)
            for (b, w) in group.enumerated() {
                for p in w.firstScored..<w.end { targets[b * T + (p - 1 - w.begin)] = tokens[p] }
                scored += w.end - w.firstScored
                processed += w.end - w.begin
            }
            for j in 0..<k {
                let lp = model.base.targetLogProbs(
                    hidden: step.heads[j].constPointer, rows: tb.batch * T, targets: targets)
                for (r, t) in targets.enumerated() where t >= 0 { nll[j] -= lp[r] }
            }
            i += group.count
            progress(i, windows.count)
        }
        let seconds = Date().timeIntervalSince(start)
        let results = (0..<k).map { j in
            let mean = nll[j] / Double(max(1, scored))
            return TunedPerplexityResult(
                side: j < names.count ? names[j] : "side \(j + 1)", tokens: tokens.count,
                scored: scored, meanNLL: mean, perplexity: Foundation.exp(mean))
        }
        return (results, seconds, Double(processed) / max(seconds, 1e-9))
    }
}
