import Foundation
import QSTEngine
import QSTFormat
import QSTNN

/// Loss (and accuracy, for classification examples) over a set of examples, without dropout.
public struct EvaluationResult: Codable, Sendable, Equatable {
    public var loss: Double
    public var labelledTokens: Int
    public var accuracy: Double?
    public var examples: Int
}

public enum Evaluation {
    /// Evaluates `model` on `examples` in batches of `batchSize` (sorted by length to save padding).
    /// With `baseOnly`, the side network is bypassed: `o = norm(h_N)`, the frozen model alone (zero-shot).
    /// With a `reducer` of several processes, each evaluates every size-th batch and the sums are reduced.
    public static func run<Model: TrainableModel>(
        model: Model, examples: [TrainingExample], labelTokens: [Int32]?, batchSize: Int,
        baseOnly: Bool = false, progress: ((Int) -> Void)? = nil,
        reducer: any GradientReducer = SingleProcess()
    ) throws -> EvaluationResult {
        if !baseOnly, model.classifierLabels != nil {
            let s = try SequencePredictor.scores(
                model: model, examples: examples, labelTokens: nil, batchSize: batchSize,
                progress: progress)
            return SequencePredictor.headEvaluation(scores: s.scores, examples: examples)
        }
        let order = examples.indices.sorted { examples[$0].ids.count < examples[$1].ids.count }
        var lossSum = 0.0, count = 0, correct = 0, classified = 0
        let head = model.frozenBackbone.headRows()
        var done = 0
        var i = 0, batchIndex = 0
        while i < order.count {
            let chunk = order[i..<min(order.count, i + batchSize)].map { examples[$0] }
            i += batchSize
            batchIndex += 1
            guard (batchIndex - 1) % reducer.size == reducer.rank else { continue }
            let batch = BatchPlan.collate(chunk)
            let o: FloatBuffer
            if baseOnly {
                let hN = try model.frozenBackbone.forwardHiddenStates(batch.tokens) { _, _ in }
                o = FloatBuffer(hN)
            } else if chunk.allSatisfy({ e in
                e.answerPosition.map { e.labels[$0] != ChunkedCrossEntropy.ignoreIndex } ?? true
            }) {
                // Stored frozen states are exact at labelled rows only: the accuracy's answer rows must be among them.
                o = try model.evaluationHidden(batch)
            } else {
                o = try model.outputHidden(batch.tokens)
            }
            let n = batch.labels.count
            do {
                let r = try batch.labels.withUnsafeBufferPointer {
                    try ChunkedCrossEntropy.lossAndGradient(
                        hidden: o.pointer, labels: $0.baseAddress!, n: n, head: head,
                        dHidden: nil)
                }
                lossSum += r.lossSum; count += r.count
                if let labelTokens {
                    let d = model.frozenBackbone.headInputSize, T = batch.tokens.seqLen
                    let logits = FloatBuffer(count: labelTokens.count)
                    for (b, ex) in chunk.enumerated() {
                        guard let cls = ex.classLabel, let pos = ex.answerPosition else { continue }
                        try ChunkedCrossEntropy.candidateLogits(
                            out: logits.pointer, hidden: o.pointer + (b * T + pos) * d,
                            n: 1, head: head, candidates: labelTokens)
                        if Softmax.argmax(logits.pointer, d: labelTokens.count) == cls { correct += 1 }
                        classified += 1
                    }
                }
            }
            done += chunk.count
            progress?(done)
        }
        if reducer.size > 1 {
            let t = try reducer.allReduceSum([lossSum, Double(count), Double(correct), Double(classified)])
            lossSum = t[0]; count = Int(t[1]); correct = Int(t[2]); classified = Int(t[3])
        }
        return EvaluationResult(
            loss: count == 0 ? 0 : lossSum / Double(count), labelledTokens: count,
            accuracy: classified == 0 ? nil : Double(correct) / Double(classified),
            examples: examples.count)
    }
}
