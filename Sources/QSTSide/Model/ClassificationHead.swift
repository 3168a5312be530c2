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
        labelRows: [Float]? = nil, pooling: HeadPooling = .last
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
        config.headPooling = pooling == .last ? nil : pooling
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
        if weights.config.headPooling == .mean, batch.labelledCount > 0 {
            return try meanPooledLoss(
                weights: weights, hidden: hidden, batch: batch, dHidden: dHidden, gradScale: gradScale)
        }
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

    /// The loss with `headPooling` = mean: the head reads each labelled row's sequence mean; its gradient
    /// goes to every pooled row, divided by the number of rows pooled.
    private static func meanPooledLoss(
        weights: SideWeights, hidden: FloatBuffer, batch: SideBatch,
        dHidden: UnsafeMutablePointer<Float>?, gradScale: Float?
    ) throws -> ChunkedCrossEntropy.Result {
        let k = weights.config.numLabels ?? 0, d = weights.config.base.hiddenSize, T = batch.tokens.seqLen
        let rows = batch.labels.indices.filter { batch.labels[$0] != ChunkedCrossEntropy.ignoreIndex }
        let pooled = meanPooled(hidden: hidden.pointer, rows: rows, seqLen: T, d: d)
        let labels = rows.map { batch.labels[$0] }, targets = batch.targets.map { t in rows.map { t[$0] } }
        let dPooled = dHidden == nil ? nil : FloatBuffer(count: rows.count * d)
        let train = dHidden != nil
        let result = try labels.withUnsafeBufferPointer { lp in
            try withTargets(targets) { tp in
                try SequenceClassification.lossAndGradient(
                    hidden: pooled.pointer, labels: lp.baseAddress!, targets: tp, n: rows.count, d: d,
                    weight: weights.value(weightName), bias: weights.value(biasName), k: k,
                    dHidden: dPooled?.pointer,
                    dWeight: train ? weights.grad(weightName) : nil, dBias: train ? weights.grad(biasName) : nil,
                    gradScale: gradScale)
            }
        }
        if let dHidden, let dPooled {
            for (r, row) in rows.enumerated() {
                let start = row - row % T, inv = 1 / Float(row - start + 1), g = dPooled.pointer + r * d
                for t in start...row { let dx = dHidden + t * d; for j in 0..<d { dx[j] += g[j] * inv } }
            }
        }
        return result
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
        let pooling = weights.config.headPooling ?? .last
        var seqLen = 1
        if pooling == .mean {
            // One row per sequence of a right-padded [rows.count, seqLen] batch (SequencePredictor's layout).
            seqLen = rows.isEmpty ? 1 : hidden.count / (d * rows.count)
            for (b, r) in rows.enumerated()
            where seqLen < 1 || r / seqLen != b || hidden.count != rows.count * seqLen * d {
                throw QSTError("classification head (mean pooling): row \(r) is not in sequence \(b) of the batch")
            }
        }
        let input = headInput(pooling, hidden: hidden, rows: rows, seqLen: seqLen, d: d)
        var out = [Float](repeating: 0, count: rows.count * k)
        out.withUnsafeMutableBufferPointer {
            SequenceClassification.logits(
                out: $0.baseAddress!, hidden: input.buffer.pointer, rows: input.rows, d: d,
                weight: weights.value(weightName), bias: weights.value(biasName), k: k)
        }
        return out
    }
}

/// What the classification head reads of the mixed output `o` (`side_config.json` `headPooling`).
public enum HeadPooling: String, Codable, CaseIterable, Sendable {
    /// `o` at the sequence's last prompt token (Hugging Face's `…ForSequenceClassification`).
    case last
    /// The mean of `o` over the sequence's positions 0 … last prompt token: every position's side output
    /// gets a direct gradient, not only through attention into the last one.
    case mean
}

extension ClassificationHead {
    /// `[rows.count, d]`: row `r` the mean of `hidden` rows `start(rows[r]) … rows[r]`, where `start(x)` is the
    /// first row of `x`'s sequence in a right-padded `[B, seqLen]` batch.
    static func meanPooled(hidden: UnsafePointer<Float>, rows: [Int], seqLen T: Int, d: Int) -> FloatBuffer {
        let out = FloatBuffer(count: rows.count * d)
        for (r, row) in rows.enumerated() {
            let start = row - row % T, o = out.pointer + r * d
            for t in start...row { let x = hidden + t * d; for j in 0..<d { o[j] += x[j] } }
            let inv = 1 / Float(row - start + 1)
            for j in 0..<d { o[j] *= inv }
        }
        return out
    }

    /// The head's input rows for `pooling`: `hidden` itself at `rows` (last), or the pooled copy with rows
    /// 0 ..< rows.count (mean).
    static func headInput(
        _ pooling: HeadPooling, hidden: FloatBuffer, rows: [Int], seqLen: Int, d: Int
    ) -> (buffer: FloatBuffer, rows: [Int]) {
        switch pooling {
        case .last: return (hidden, rows)
        case .mean: return (meanPooled(hidden: hidden.pointer, rows: rows, seqLen: seqLen, d: d), Array(rows.indices))
        }
    }
}

extension SideModel {
    public var classifierLabels: Int? { weights.config.numLabels }
    public func classifierLogits(hidden: FloatBuffer, rows: [Int]) throws -> [Float] {
        try ClassificationHead.logits(weights: weights, hidden: hidden, rows: rows)
    }
}
