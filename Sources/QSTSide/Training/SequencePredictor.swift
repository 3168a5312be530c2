import Foundation
import QSTEngine
import QSTFormat
import QSTNN

/// Per-example class scores of a classification set: the classification head's outputs when the model has
/// one, else the logits of the label words' first tokens (the verbalizer) through the frozen LM head.
public enum SequencePredictor {
    /// How the scores were made.
    public enum Mode: String, Codable, Sendable {
        case head = "classification-head"
        case labelWords = "label-words"
    }

    /// Scores `[examples.count][K]` in the order of `examples`, read at each example's `answerPosition`
    /// (the last prompt token). With `baseOnly`, the side network is bypassed (zero-shot, label words).
    public static func scores<Model: TrainableModel>(
        model: Model, examples: [TrainingExample], labelTokens: [Int32]?,
        batchSize: Int, baseOnly: Bool = false,
        progress: ((Int) -> Void)? = nil
    ) throws -> (scores: [[Float]], mode: Mode) {
        let head: (k: Int, logits: (FloatBuffer, [Int]) throws -> [Float])? =
            baseOnly
            ? nil : model.classifierLabels.map { k in (k, { try model.classifierLogits(hidden: $0, rows: $1) }) }
        return try scores(
            backbone: model.frozenBackbone, output: baseOnly ? nil : { try model.outputHidden($0) },
            head: head, examples: examples, labelTokens: labelTokens, batchSize: batchSize, progress: progress)
    }

    /// The same with the pieces given: `output` maps a batch to the LM head's input `o [n, d]` (nil: the
    /// frozen model alone, `norm(h_N)`); `head` (K and its logits at rows of `o`) replaces the label words.
    public static func scores(
        backbone: any FrozenBackbone, output: ((TokenBatch) throws -> FloatBuffer)?,
        head: (k: Int, logits: (FloatBuffer, [Int]) throws -> [Float])?,
        examples: [TrainingExample], labelTokens: [Int32]?, batchSize: Int,
        progress: ((Int) -> Void)? = nil
    ) throws -> (scores: [[Float]], mode: Mode) {
        if head == nil, labelTokens == nil {
            throw QSTError("no classification head and no label words: cannot classify")
        }
        guard batchSize >= 1 else { throw QSTError("batch size \(batchSize) must be at least 1") }
        let lmHead = backbone.headRows()
        let d = backbone.hiddenSize
        var out = [[Float]](repeating: [], count: examples.count)
        let order = examples.indices.sorted { examples[$0].ids.count < examples[$1].ids.count }
        var i = 0
        while i < order.count {
            let idx = Array(order[i..<min(order.count, i + batchSize)])
            i += idx.count
            let chunk = idx.map { examples[$0] }
            let batch = BatchPlan.collate(chunk)
            let T = batch.tokens.seqLen
            let o: FloatBuffer
            if let output {
                o = try output(batch.tokens)
            } else {
                o = FloatBuffer(try backbone.forwardHiddenStates(batch.tokens) { _, _ in })
            }
            let rows = try chunk.enumerated().map { b, ex -> Int in
                guard let pos = ex.answerPosition else {
                    throw QSTError("example without an answer position cannot be classified")
                }
                return b * T + pos
            }
            if let head {
                let z = try head.logits(o, rows)
                for (b, e) in idx.enumerated() { out[e] = Array(z[b * head.k..<(b + 1) * head.k]) }
            } else if let labelTokens {
                let k = labelTokens.count
                let z = FloatBuffer(count: k)
                for (b, e) in idx.enumerated() {
                    do {
                        try ChunkedCrossEntropy.candidateLogits(
                            out: z.pointer, hidden: o.pointer + rows[b] * d, n: 1,
                            head: lmHead, candidates: labelTokens)
                    }
                    out[e] = Array(UnsafeBufferPointer(start: z.pointer, count: k))
                }
            }
            progress?(i)
        }
        return (out, head != nil ? .head : .labelWords)
    }

    /// The predicted class of each score row (argmax; K = 1 has no classes and gives -1).
    public static func classes(_ scores: [[Float]]) -> [Int] {
        scores.map { s in
            guard s.count >= 2 else { return -1 }
            return s.indices.max { s[$0] < s[$1] || (s[$0] == s[$1] && $0 > $1) } ?? -1
        }
    }

    /// Mean head loss (cross-entropy, or squared error for K = 1) and accuracy of head scores.
    static func headEvaluation(scores: [[Float]], examples: [TrainingExample]) -> EvaluationResult {
        var loss = 0.0, correct = 0, classified = 0
        for (s, ex) in zip(scores, examples) {
            if s.count == 1 {
                let diff = Double(s[0]) - Double(ex.regressionTarget ?? 0)
                loss += diff * diff
                continue
            }
            guard let y = ex.classLabel, y < s.count else { continue }
            let mx = s.max() ?? 0
            let lse = Double(mx) + Foundation.log(s.reduce(0.0) { $0 + Foundation.exp(Double($1 - mx)) })
            loss += lse - Double(s[y])
            classified += 1
        }
        for (c, ex) in zip(classes(scores), examples) where c >= 0 && c == ex.classLabel { correct += 1 }
        return EvaluationResult(
            loss: examples.isEmpty ? 0 : loss / Double(examples.count), labelledTokens: examples.count,
            accuracy: classified == 0 ? nil : Double(correct) / Double(classified),
            examples: examples.count)
    }
}
