import Foundation
import QSTFormat
import QSTNN

/// The training loop: micro-batches in a seeded order, gradient accumulation, clipping, AdamW with a
/// schedule, periodic evaluation (best weights kept), early stopping and atomic, resumable checkpoints.
public final class Trainer<Model: TrainableModel> {
    public let model: Model
    public let training: TrainingConfig
    public let train: [TrainingExample]
    public let eval: [TrainingExample]
    public let labelTokens: [Int32]?
    public let run: String
    public let optimizer: AdamW
    public private(set) var state: TrainerState
    public let totalSteps: Int
    public let warmupSteps: Int

    /// Called after every optimizer step and evaluation (for progress bars and the JSON-lines log).
    public var onLog: ((TrainingLogEntry) -> Void)?
    /// Called while evaluating with the number of examples done.
    public var onEvalProgress: ((Int) -> Void)?
    /// The processes of a data-parallel run (each computes a slice of every micro-batch; gradients are
    /// summed after backward; only rank 0 writes). `SingleProcess` reduces nothing.
    public var reducer: any GradientReducer = SingleProcess()

    /// A fresh run (`resumeFrom == nil`) or one continuing from a loaded checkpoint.
    public init(
        model: Model, training: TrainingConfig, train: [TrainingExample], eval: [TrainingExample],
        labelTokens: [Int32]?, run: String, resumed: (optimizer: AdamW, state: TrainerState)? = nil
    ) throws {
        try training.validate()
        guard !train.isEmpty else { throw QSTError("no training examples") }
        self.model = model; self.training = training; self.train = train; self.eval = eval
        self.labelTokens = labelTokens; self.run = run
        totalSteps = training.totalSteps(examples: train.count)
        warmupSteps = training.warmupSteps(total: totalSteps)
        if let resumed {
            optimizer = resumed.optimizer; state = resumed.state
        } else {
            optimizer = AdamW(parameters: model.trainableParameters, config: training.adamW)
            state = TrainerState()
            state.rngState = training.seed &+ 0x5EED
        }
        optimizer.lrScales = training.learningRateScales(optimizer.parameters)
    }

    private var epochPlan: (epoch: Int, batches: [[Int]])?

    private func nextMicroBatch() -> [TrainingExample] {
        if epochPlan?.epoch != state.epoch {
            epochPlan = (
                state.epoch,
                BatchPlan.batches(
                    lengths: train.map(\.ids.count), batchSize: training.batchSize,
                    seed: training.seed, epoch: state.epoch,
                    groupByLength: training.groupByLength)
            )
        }
        let batches = epochPlan?.batches ?? []
        let pick = batches[state.cursor].map { train[$0] }
        state.cursor += 1
        if state.cursor >= batches.count { state.epoch += 1; state.cursor = 0 }
        return pick
    }

    public var isFinished: Bool { state.step >= totalSteps }

    /// One optimizer step. Throws (before touching the weights) when the loss or gradient is not finite.
    @discardableResult
    public func step() throws -> TrainingLogEntry {
        let start = Date()
        model.zeroGradients()
        // Dropout keys are per example (output j + 1 of this step's stream for global batch position j), so
        // masks do not depend on which process computes an example nor on what it is batched with.
        var keys = SplitMix64(seed: state.rngState)
        var lossSum = 0.0, count = 0, tokens = 0
        for m in 0..<training.gradAccumulation {
            let micro = nextMicroBatch()
            // Normalised by the whole micro-batch's labelled count, whichever slice this process computes.
            let labelled = micro.reduce(0) {
                $0 + $1.labels.lazy.filter { $0 != ChunkedCrossEntropy.ignoreIndex }.count
            }
            guard labelled > 0 else { continue }
            tokens += micro.reduce(0) { $0 + $1.ids.count }
            let mine = reducer.shard(micro.count)
            guard !mine.isEmpty else { continue }
            var batch = BatchPlan.collate(Array(micro[mine]))
            let batchKeys = mine.map { keys.peek(m * training.batchSize + $0 + 1) }
            batch.dropoutKeys = batchKeys
            var rng = SplitMix64(seed: batchKeys[0])  // models that draw dropout from one stream (LoRA)
            let scale = 1 / Float(labelled * training.gradAccumulation)
            let r = try model.trainStep(batch, rng: &rng, gradScale: scale)
            lossSum += r.lossSum; count += r.count
        }
        keys.advance(by: training.gradAccumulation * training.batchSize)
        if reducer.size > 1 {
            let totals = try reducer.allReduceSum([lossSum, Double(count)])
            lossSum = totals[0]; count = Int(totals[1])
            try reducer.reduceGradients(optimizer.parameters)
        }
        let loss = count == 0 ? 0 : lossSum / Double(count)
        let norm = GradientClipping.globalNorm(optimizer.parameters)
        guard loss.isFinite, norm.isFinite else {
            throw QSTError(
                "step \(state.step + 1): non-finite \(loss.isFinite ? "gradient norm" : "loss") "
                    + "(loss \(loss), gradient norm \(norm)); stopping — the last checkpoint in \(run) is intact; "
                    + "try a lower --lr or --max-grad-norm")
        }
        if training.maxGradNorm > 0 { GradientClipping.clip(optimizer.parameters, maxNorm: training.maxGradNorm) }
        let lr = training.schedule.rate(
            base: training.learningRate, step: state.step, total: totalSteps,
            warmup: warmupSteps)
        optimizer.update(lr: Float(lr))
        state.step += 1
        state.rngState = keys.state
        state.tokensSeen += tokens
        let secs = Date().timeIntervalSince(start)
        let entry = TrainingLogEntry(
            kind: "train", step: state.step, epoch: epochProgress, loss: loss,
            learningRate: lr, gradNorm: norm,
            tokensPerSecond: secs > 0 ? Double(tokens) / secs : nil, elapsedSeconds: secs)
        onLog?(entry)
        return entry
    }

    /// Loss (and accuracy when classifying) on the evaluation set, at most `evalLimit` examples.
    public func evaluate() throws -> EvaluationResult {
        let subset = training.evalLimit > 0 ? Array(eval.prefix(training.evalLimit)) : eval
        return try Evaluation.run(
            model: model, examples: subset, labelTokens: labelTokens,
            batchSize: training.batchSize, progress: onEvalProgress, reducer: reducer)
    }

    var epochProgress: Double {
        Double(state.epoch) + Double(state.cursor) / Double(max(1, training.microBatchesPerEpoch(train.count)))
    }

    /// Evaluates on the eval set; keeps `run/best` when the metric improved (`TrainingConfig.bestMetric`: accuracy
    /// if classifying, else loss, by default). Returns whether early stopping should end the run.
    public func evaluateAndKeepBest() throws -> (result: EvaluationResult, stop: Bool) {
        let start = Date()
        let r = try evaluate()
        let metric = (training.bestMetric ?? .accuracy).score(r)
        if state.bestMetric.map({ metric > $0 }) ?? true {
            state.bestMetric = metric; state.bestStep = state.step; state.evalsWithoutImprovement = 0
            if reducer.isLeader {
                try model.saveWeights(directory: run + "/best", extraMetadata: ["step": String(state.step)])
            }
        } else {
            state.evalsWithoutImprovement += 1
        }
        onLog?(
            TrainingLogEntry(
                kind: "eval", step: state.step, epoch: epochProgress, loss: r.loss, accuracy: r.accuracy,
                elapsedSeconds: Date().timeIntervalSince(start)))
        let stop = training.earlyStoppingPatience > 0 && state.evalsWithoutImprovement >= training.earlyStoppingPatience
        return (r, stop)
    }

    public func saveCheckpoint() throws {
        guard reducer.isLeader else { return }
        try model.saveCheckpoint(run: run, optimizer: optimizer, state: state, training: training)
    }

    /// Runs to the end (or early stop): steps, evaluations every `evalEvery`, checkpoints every `saveEvery`,
    /// a final evaluation, checkpoint and `run/final`.
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
        if reducer.isLeader {
            try model.saveWeights(directory: run + "/final", extraMetadata: ["step": String(state.step)])
        }
        return last
    }
}
