import Foundation
import QSTEngine
import QSTFormat
import QSTNN
import enum QSTCore.Parallel
import struct QSTCore.SendablePointer

/// How far a (quantized) model's next-token distributions are from a reference model's on the same text.
public struct ComparisonResult: Codable, Sendable {
    public var positions: Int
    /// Mean over positions of KL(P_reference ‖ P_model), in nats.
    public var meanKL: Double
    /// Fraction of positions where both models' most likely next token agree.
    public var top1Agreement: Double
    public var perplexity: Double
    public var referencePerplexity: Double
    public var seconds: Double
}

public enum ModelComparison {
    /// `headInputs(ids)`, when given, replaces `model.forward` for the model under test: the rows its LM head
    /// reads (a base with a side network supplies its side's output here); the head is `model`'s.
    public static func evaluate(
        model: FrozenModel, reference: FrozenModel, tokens: [Int32], ctx: Int,
        stride: Int? = nil, headInputs: (([Int32]) throws -> FloatBuffer)? = nil,
        progress: (Int, Int) -> Void = { _, _ in }
    ) throws -> ComparisonResult {
        guard model.vocabSize == reference.vocabSize else {
            throw QSTError("compare: vocabularies differ (\(model.vocabSize) vs \(reference.vocabSize) tokens)")
        }
        let windows = try EvaluationWindow.plan(tokenCount: tokens.count, ctx: ctx, stride: stride ?? ctx)
        let start = Date()
        let V = model.vocabSize
        var positions = 0, agree = 0
        var klSum = 0.0, nll = 0.0, refNLL = 0.0
        for (wi, w) in windows.enumerated() {
            let ids = Array(tokens[w.begin..<w.end])
            let T = ids.count
            let h = try headInputs?(ids) ?? model.forward(ids: ids, batch: 1, newTokens: T)
            let hr = try reference.forward(ids: ids, batch: 1, newTokens: T)
            // Rows predicting scored tokens: positions p-1 for p in firstScored..<end.
            let r0 = w.firstScored - 1 - w.begin, rows = w.end - w.firstScored
            let d = model.headInputSize
            try model.forEachLogitChunk(hidden: h.constPointer + r0 * d, rows: rows) { c0, cn, logits in
                let refLogits = reference.logits(hidden: hr.constPointer + (r0 + c0) * d, rows: cn)
                let stats = rowStats(
                    logits, refLogits.constPointer, rows: cn, vocab: V,
                    targets: (0..<cn).map { Int(tokens[w.firstScored + c0 + $0]) })
                for s in stats {
                    klSum += s.kl; nll -= s.logProb; refNLL -= s.refLogProb
                    if s.agree { agree += 1 }
                }
                positions += cn
            }
            progress(wi + 1, windows.count)
        }
        let n = Double(max(1, positions))
        return ComparisonResult(
            positions: positions, meanKL: klSum / n, top1Agreement: Double(agree) / n,
            perplexity: Foundation.exp(nll / n), referencePerplexity: Foundation.exp(refNLL / n),
            seconds: Date().timeIntervalSince(start))
    }

    struct RowStats { var kl: Double; var agree: Bool; var logProb: Double; var refLogProb: Double }

    static func rowStats(
        _ logits: UnsafePointer<Float>, _ ref: UnsafePointer<Float>, rows: Int, vocab V: Int,
        targets: [Int]
    ) -> [RowStats] {
        let out = UnsafeMutableBufferPointer<RowStats>.allocate(capacity: rows)
        defer { out.deallocate() }
        let op = SendablePointer(out.baseAddress!), lp = SendablePointer(logits), rp = SendablePointer(ref)
        Parallel.forRanges(rows, minChunk: 2) { a, b in
            for i in a..<b {
                let m = lp.base + i * V, r = rp.base + i * V
                let lseM = LogSoftmaxRow.logSumExp(m, count: V), lseR = LogSoftmaxRow.logSumExp(r, count: V)
                var kl = 0.0
                for j in 0..<V {
                    let logR = Double(r[j]) - lseR
                    kl += Foundation.exp(logR) * (logR - (Double(m[j]) - lseM))
                }
                let agree = Softmax.argmax(m, d: V) == Softmax.argmax(r, d: V)
                (op.base + i).initialize(
                    to: RowStats(
                        kl: kl, agree: agree, logProb: Double(m[targets[i]]) - lseM,
                        refLogProb: Double(r[targets[i]]) - lseR))
            }
        }
        return Array(out)
    }
}
