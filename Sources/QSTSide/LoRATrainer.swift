import Foundation
import QSTFormat
import QSTNN

/// The QST training loop (same batch order, accumulation, clipping, AdamW + schedule, evaluation, best/final
/// folders, early stopping and checkpoints as `SideTrainer`) for LoRA adapters. Checkpoints hold
/// `adapter_model.safetensors` + `adapter_config.json` (PEFT layout) instead of the side network.
public final class LoRATrainer {
    public let model: LoRAModel
    public let training: TrainingConfig
    public let train: [TrainingExample]
    public let eval: [TrainingExample]
    public let labelTokens: [Int32]?
    public let run: String
    public let optimizer: AdamW
    public private(set) var state: TrainerState
    public let totalSteps: Int
    public let warmupSteps: Int
    public var onLog: ((TrainingLogEntry) -> Void)?

    public init(model: LoRAModel, training: TrainingConfig, train: [TrainingExample], eval: [TrainingExample],
                labelTokens: [Int32]?, run: String, resumed: (optimizer: AdamW, state: TrainerState)? = nil) throws {
        try training.validate()
        guard !train.isEmpty else { throw QSTError("no training examples") }
        self.model = model; self.training = training; self.train = train; self.eval = eval
        self.labelTokens = labelTokens; self.run = run
        totalSteps = training.totalSteps(examples: train.count)
        warmupSteps = training.warmupSteps(total: totalSteps)
        if let resumed {
            optimizer = resumed.optimizer; state = resumed.state
        } else {
            optimizer = AdamW(parameters: model.weights.parameters, config: training.adamW)
            state = TrainerState()
            state.rngState = training.seed &+ 0x5EED
        }
    }

    private var epochPlan: (epoch: Int, batches: [[Int]])?

    private func nextMicroBatch() -> [TrainingExample] {
        if epochPlan?.epoch != state.epoch {
            epochPlan = (state.epoch, BatchPlan.batches(lengths: train.map(\.ids.count), batchSize: training.batchSize,
                                                        seed: training.seed, epoch: state.epoch,
                                                        groupByLength: training.groupByLength))
        }
        let batches = epochPlan?.batches ?? []
        let pick = batches[state.cursor].map { train[$0] }
        state.cursor += 1
        if state.cursor >= batches.count { state.epoch += 1; state.cursor = 0 }
        return pick
    }

    public var isFinished: Bool { state.step >= totalSteps }

    var epochProgress: Double {
        Double(state.epoch) + Double(state.cursor) / Double(max(1, training.microBatchesPerEpoch(train.count)))
    }

    /// One optimizer step; throws before touching the adapters when the loss or gradient is not finite.
    @discardableResult
    public func step() throws -> TrainingLogEntry {
        let start = Date()
        model.weights.zeroGradients()
        var rng = SplitMix64(seed: 0)
        rng.state = state.rngState
        var lossSum = 0.0, count = 0, tokens = 0
        for _ in 0..<training.gradAccumulation {
            let batch = BatchPlan.collate(nextMicroBatch())
            let labelled = batch.labelledCount
            guard labelled > 0 else { continue }
            let r = try model.trainStep(batch, rng: &rng, gradScale: 1 / Float(labelled * training.gradAccumulation))
            lossSum += r.lossSum; count += r.count
            tokens += batch.tokens.lengths.reduce(0, +)
        }
        let loss = count == 0 ? 0 : lossSum / Double(count)
        let norm = GradientClipping.globalNorm(optimizer.parameters)
        guard loss.isFinite, norm.isFinite else {
            throw QSTError("step \(state.step + 1): non-finite \(loss.isFinite ? "gradient norm" : "loss") " +
                           "(loss \(loss), gradient norm \(norm)); stopping — the last checkpoint in \(run) is intact")
        }
        if training.maxGradNorm > 0 { GradientClipping.clip(optimizer.parameters, maxNorm: training.maxGradNorm) }
        let lr = training.schedule.rate(base: training.learningRate, step: state.step, total: totalSteps, warmup: warmupSteps)
        optimizer.update(lr: Float(lr))
        state.step += 1
        state.rngState = rng.state
        state.tokensSeen += tokens
        let secs = Date().timeIntervalSince(start)
        let entry = TrainingLogEntry(kind: "train", step: state.step, epoch: epochProgress, loss: loss, learningRate: lr,
                                     gradNorm: norm, tokensPerSecond: secs > 0 ? Double(tokens) / secs : nil,
                                     elapsedSeconds: secs)
        onLog?(entry)
        return entry
    }

    public func evaluate() throws -> EvaluationResult {
        let subset = training.evalLimit > 0 ? Array(eval.prefix(training.evalLimit)) : eval
        return try LoRAEvaluation.run(model: model, examples: subset, labelTokens: labelTokens, batchSize: training.batchSize)
    }

    /// Evaluates and keeps `run/best` when the metric improved; returns whether early stopping ends the run.
    public func evaluateAndKeepBest() throws -> (result: EvaluationResult, stop: Bool) {
        let start = Date()
        let r = try evaluate()
        let metric = r.accuracy ?? -r.loss
        if state.bestMetric.map({ metric > $0 }) ?? true {
            state.bestMetric = metric; state.bestStep = state.step; state.evalsWithoutImprovement = 0
            try LoRAAdapterIO.save(model.weights, directory: run + "/best", extraMetadata: ["step": String(state.step)])
        } else {
            state.evalsWithoutImprovement += 1
        }
        onLog?(TrainingLogEntry(kind: "eval", step: state.step, epoch: epochProgress, loss: r.loss, accuracy: r.accuracy,
                                elapsedSeconds: Date().timeIntervalSince(start)))
        let stop = training.earlyStoppingPatience > 0 && state.evalsWithoutImprovement >= training.earlyStoppingPatience
        return (r, stop)
    }

    public func saveCheckpoint() throws {
        try LoRACheckpoint.save(run: run, weights: model.weights, optimizer: optimizer, state: state, training: training)
    }

    public func runToEnd() throws -> EvaluationResult? {
        var last: EvaluationResult?
        while !isFinished {
            try step()
            if training.saveEvery > 0, state.step % training.saveEvery == 0 { try saveCheckpoint() }
            if !eval.isEmpty, training.evalEvery > 0, state.step % training.evalEvery == 0 {
                let (r, stop) = try evaluateAndKeepBest()
                last = r
                if stop { break }
            }
        }
        if !eval.isEmpty, last == nil || training.evalEvery == 0 || state.step % training.evalEvery != 0 {
            last = try evaluateAndKeepBest().result
        }
        try saveCheckpoint()
        try LoRAAdapterIO.save(model.weights, directory: run + "/final", extraMetadata: ["step": String(state.step)])
        return last
    }
}

/// Loss and accuracy of a LoRA model, exactly as `Evaluation.run` does for the side network.
public enum LoRAEvaluation {
    public static func run(model: LoRAModel, examples: [TrainingExample], labelTokens: [Int32]?,
                           batchSize: Int) throws -> EvaluationResult {
        let order = examples.indices.sorted { examples[$0].ids.count < examples[$1].ids.count }
        let head = model.base.headRows(), d = model.shape.hidden
        var lossSum = 0.0, count = 0, correct = 0, classified = 0, i = 0
        while i < order.count {
            let chunk = order[i..<min(order.count, i + batchSize)].map { examples[$0] }
            i += batchSize
            let batch = BatchPlan.collate(chunk)
            let o = try model.outputHidden(batch.tokens)
            do {
                let r = try batch.labels.withUnsafeBufferPointer {
                    try ChunkedCrossEntropy.lossAndGradient(hidden: o.pointer, labels: $0.baseAddress!, n: batch.labels.count,
                                                            head: head, dHidden: nil)
                }
                lossSum += r.lossSum; count += r.count
                if let labelTokens {
                    let T = batch.tokens.seqLen, logits = FloatBuffer(count: labelTokens.count)
                    for (b, ex) in chunk.enumerated() {
                        guard let cls = ex.classLabel, let pos = ex.answerPosition else { continue }
                        try ChunkedCrossEntropy.candidateLogits(out: logits.pointer, hidden: o.pointer + (b * T + pos) * d,
                                                                n: 1, head: head, candidates: labelTokens)
                        if Softmax.argmax(logits.pointer, d: labelTokens.count) == cls { correct += 1 }
                        classified += 1
                    }
                }
            } catch let e as NNError { throw QSTError(e.message) }
        }
        return EvaluationResult(loss: count == 0 ? 0 : lossSum / Double(count), labelledTokens: count,
                                accuracy: classified == 0 ? nil : Double(correct) / Double(classified), examples: examples.count)
    }
}
