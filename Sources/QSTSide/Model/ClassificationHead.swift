import Foundation
import QSTFormat
import QSTNN

/// The side network's optional sequence-classification head (Formats/SIDE.md §10): `score.weight [K, d]`,
/// `score.bias [K]` applied to the mixed output `o` (the input the LM head reads in language-model mode)
/// at each sequence's last non-padding token. Unlike Hugging Face's `score` layer (no bias), it has a
/// bias: a free class prior costs K floats and helps unbalanced tasks (MRPC is 68 % positive).
public enum ClassificationHead {
    public static let weightName = "score.weight"
    public static let biasName = "score.bias"

    /// A copy of `weights` with a K-label head added (side tensors keep their offsets: the head is laid out
    /// last). The head is drawn as `nn.Linear`'s default, U(±1/√d), from SplitMix64(`seed`) — or, with
    /// `labelRows` (`[K, d]`: the frozen LM head's rows of the task's label words, `labelWordRows`), starts
    /// as those rows with a zero bias: with `o = norm(h_N)` at step 0 (`--init base`) the head's logits are
    /// then the base model's label-word logits, the zero-shot classifier (Formats/RUNS.md §2.3).
    public static func attach(
        to weights: SideWeights, numLabels k: Int, seed: UInt64,
        labelRows: [Float]? = nil
    ) throws -> SideWeights {
        if let existing = weights.config.numLabels {
            guard existing == k else {
                throw QSTError(
                    "the side network already has a \(existing)-label head; --num-labels \(k) does not match")
            }
            return weights
        }
        var config = weights.config
        config.numLabels = k
        let out = try SideWeights(config: config)
        out.values.pointer.update(from: weights.values.pointer, count: weights.values.count)
        let fresh = try SideWeights(config: config)
        fresh.initialize(seed: seed)
        for name in [weightName, biasName] {
            guard let s = out.spec(name) else { throw QSTError("side layout has no \(name) after adding a head") }
            out.value(name).update(from: fresh.value(name), count: s.count)
        }
        if let labelRows {
            let d = config.base.hiddenSize
            guard labelRows.count == k * d else {
                throw QSTError("classification head: \(labelRows.count) label-row floats for \(k) labels × \(d)")
            }
            out.value(weightName).update(from: labelRows, count: k * d)
            out.value(biasName).update(repeating: 0, count: k)
        }
        return out
    }

    /// The frozen LM head's rows `[K, d]` of `tokens` (the first token of each label word, class order).
    public static func labelWordRows(head: any HeadRows, tokens: [Int32]) throws -> [Float] {
        let d = head.dim
        var out = [Float](repeating: 0, count: tokens.count * d)
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: d)
        defer { scratch.deallocate() }
        for (c, t) in tokens.enumerated() {
            guard t >= 0, Int(t) < head.vocabSize else {
                throw QSTError("classification head: label token \(t) is outside the vocabulary of \(head.vocabSize)")
            }
            let row = head.rows(start: Int(t), count: 1, scratch: scratch)
            for j in 0..<d { out[c * d + j] = row[j] }
        }
        return out
    }

    /// Loss (and gradients when `dHidden` is given) of the head at the batch's labelled positions.
    static func lossAndGradient(
        weights: SideWeights, hidden: FloatBuffer, batch: SideBatch,
        dHidden: UnsafeMutablePointer<Float>?,
        gradScale: Float? = nil
    ) throws -> ChunkedCrossEntropy.Result {
        guard let k = weights.config.numLabels else { throw QSTError("side network has no classification head") }
        let d = weights.config.base.hiddenSize, n = batch.labels.count
        guard hidden.count >= n * d else { throw QSTError("classification head: \(hidden.count) floats for \(n) rows") }
        let train = dHidden != nil
        do {
            return try batch.labels.withUnsafeBufferPointer { lp in
                try withTargets(batch.targets) { tp in
                    try SequenceClassification.lossAndGradient(
                        hidden: hidden.pointer, labels: lp.baseAddress!, targets: tp, n: n, d: d,
                        weight: weights.value(weightName), bias: weights.value(biasName), k: k, dHidden: dHidden,
                        dWeight: train ? weights.grad(weightName) : nil, dBias: train ? weights.grad(biasName) : nil,
                        gradScale: gradScale)
                }
            }
        }
    }

    private static func withTargets<R>(_ t: [Float]?, _ body: (UnsafePointer<Float>?) throws -> R) rethrows -> R {
        guard let t else { return try body(nil) }
        return try t.withUnsafeBufferPointer { try body($0.baseAddress) }
    }

    /// Head outputs `[rows.count, K]` at the given rows of `hidden [n, d]`.
    public static func logits(weights: SideWeights, hidden: FloatBuffer, rows: [Int]) throws -> [Float] {
        guard let k = weights.config.numLabels else { throw QSTError("side network has no classification head") }
        let d = weights.config.base.hiddenSize
        for r in rows where (r + 1) * d > hidden.count {
            throw QSTError("classification head: row \(r) is outside the \(hidden.count / d) hidden rows")
        }
        var out = [Float](repeating: 0, count: rows.count * k)
        out.withUnsafeMutableBufferPointer {
            SequenceClassification.logits(
                out: $0.baseAddress!, hidden: hidden.pointer, rows: rows, d: d,
                weight: weights.value(weightName), bias: weights.value(biasName), k: k)
        }
        return out
    }
}

extension SideModel {
    public var classifierLabels: Int? { weights.config.numLabels }
    public func classifierLogits(hidden: FloatBuffer, rows: [Int]) throws -> [Float] {
        try ClassificationHead.logits(weights: weights, hidden: hidden, rows: rows)
    }
}
