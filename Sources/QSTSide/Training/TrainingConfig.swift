import Foundation
import QSTNN

/// Hyper-parameters of a `qst-tune` run. Defaults are the paper's GLUE recipe (lr 5e-4, linear decay,
/// 6 % warm-up, weight decay 0.01); `instruct()` gives the chat/instruction recipe.
public struct TrainingConfig: Codable, Sendable, Equatable {
    public var learningRate: Double = 5e-4
    public var beta1: Float = 0.9
    public var beta2: Float = 0.999
    public var eps: Float = 1e-8
    public var weightDecay: Float = 0.01
    public var schedule: LRSchedule = .linear
    public var warmupRatio: Double = 0.06
    /// Global L2 gradient-norm clip; 0 disables clipping.
    public var maxGradNorm: Double = 1.0
    public var gradAccumulation: Int = 1
    public var batchSize: Int = 8
    public var maxLength: Int = 256
    public var epochs: Int = 1
    /// When set, the run ends after this many optimizer steps (overrides `epochs`).
    public var maxSteps: Int? = nil
    public var seed: UInt64 = 0
    public var groupByLength: Bool = true
    /// Evaluate every N optimizer steps (0 = only at the end).
    public var evalEvery: Int = 0
    /// Cap on evaluation examples (0 = all).
    public var evalLimit: Int = 0
    /// Checkpoint every N optimizer steps (0 = only at the end).
    public var saveEvery: Int = 0
    /// Stop after this many evaluations without improvement (0 = never).
    public var earlyStoppingPatience: Int = 0
    /// What "improvement" means for `run/best` and early stopping. nil = `.accuracy` (optional so run files
    /// written before it existed still load).
    public var bestMetric: BestMetric? = nil
    /// Learning-rate multiplier for the side blocks (`model.qst_layers.*`, OPT `model.decoder.qst_layers.*`): a
    /// parameter group, so blocks copied from the base (`--init base-pruned`) can move slower than the
    /// downsamplers, gates, `upsample` and head. nil = 1 (optional so run files written before it existed still load).
    public var blockLearningRateScale: Double? = nil
    /// Learning-rate multiplier for the layer gates (`model.z.*`, OPT `model.decoder.z.*`): at the preset's rate a
    /// gate logit moves by at most ~0.05 in 600 steps, so the gates keep their start. nil = 1.
    public var gateLearningRateScale: Double? = nil

    public init() {}

    /// The evaluation number `run/best` and early stopping follow.
    public enum BestMetric: String, Codable, Sendable, CaseIterable {
        /// Accuracy when the run classifies (GLUE tasks), else the loss: accuracy is the score reported.
        case accuracy
        /// The loss, always: on a few hundred held-out examples accuracy moves in steps of 1/n and by chance
        /// (±2.9 points at 95 % on 500), the mean loss moves smoothly.
        case loss

        /// The number to maximise for an evaluation result.
        public func score(_ r: EvaluationResult) -> Double {
            switch self {
            case .accuracy: return r.accuracy ?? -r.loss
            case .loss: return -r.loss
            }
        }
    }

    /// `model.qst_layers.{i}.…` (LLaMA family) or `model.decoder.qst_layers.{i}.…` (OPT): the side blocks
    /// `blockLearningRateScale` scales.
    static func isSideBlock(_ name: String) -> Bool {
        name.hasPrefix("model.qst_layers.") || name.hasPrefix("model.decoder.qst_layers.")
    }

    /// `model.z.{i}` (LLaMA family) or `model.decoder.z.{i}` (OPT): the layer gates `gateLearningRateScale` scales.
    static func isLayerGate(_ name: String) -> Bool {
        name.hasPrefix("model.z.") || name.hasPrefix("model.decoder.z.")
    }

    /// One learning-rate multiplier per optimizer parameter (`AdamW.lrScales`).
    public func learningRateScales(_ parameters: [Parameter]) -> [Float] {
        let block = Float(blockLearningRateScale ?? 1), gate = Float(gateLearningRateScale ?? 1)
        return parameters.map {
            Self.isSideBlock($0.name) ? block : Self.isLayerGate($0.name) ? gate : 1
        }
    }

    public static func instruct() -> TrainingConfig {
        var c = TrainingConfig()
        c.learningRate = 2e-4; c.schedule = .constant; c.warmupRatio = 0.03; c.maxGradNorm = 0.3
        return c
    }

    public func validate() throws {
        func fail(_ m: String) -> Error { QSTError("training configuration: \(m)", kind: .invalidConfiguration) }
        guard learningRate > 0, learningRate.isFinite else { throw fail("learning rate must be positive") }
        guard batchSize >= 1, gradAccumulation >= 1, maxLength >= 2 else {
            throw fail("batch size and gradient accumulation must be ≥ 1, max length ≥ 2")
        }
        guard epochs >= 1 || (maxSteps ?? 0) >= 1 else { throw fail("give at least one epoch or step") }
        guard warmupRatio >= 0, warmupRatio < 1 else { throw fail("warm-up ratio must be in [0, 1)") }
        if let s = blockLearningRateScale, !(s >= 0 && s.isFinite) {
            throw fail("block learning-rate scale must be finite and ≥ 0")
        }
        if let s = gateLearningRateScale, !(s >= 0 && s.isFinite) {
            throw fail("gate learning-rate scale must be finite and ≥ 0")
        }
        guard (0..<1).contains(beta1), (0..<1).contains(beta2), eps > 0, weightDecay >= 0 else {
            throw fail("AdamW needs 0 ≤ β < 1, ε > 0, weight decay ≥ 0")
        }
    }

    public var adamW: AdamW.Config { AdamW.Config(beta1: beta1, beta2: beta2, eps: eps, weightDecay: weightDecay) }

    /// Micro-batches in one epoch of `examples` examples.
    public func microBatchesPerEpoch(_ examples: Int) -> Int { (examples + batchSize - 1) / batchSize }

    /// Optimizer steps of the whole run.
    public func totalSteps(examples: Int) -> Int {
        if let maxSteps { return maxSteps }
        return max(1, epochs * microBatchesPerEpoch(examples) / gradAccumulation)
    }

    public func warmupSteps(total: Int) -> Int { Int((warmupRatio * Double(total)).rounded(.up)) }
}

/// Where training stands: everything besides weights and moments that a resumed run needs to continue
/// bit-identically.
public struct TrainerState: Codable, Sendable, Equatable {
    public var step = 0
    public var epoch = 0
    /// Micro-batches of `epoch` already consumed.
    public var cursor = 0
    /// SplitMix64 state of the dropout stream.
    public var rngState: UInt64 = 0
    public var bestMetric: Double? = nil
    public var bestStep: Int? = nil
    public var evalsWithoutImprovement = 0
    public var tokensSeen = 0
    public init() {}
}

/// One line of run/log.jsonl.
public struct TrainingLogEntry: Codable, Sendable {
    public var kind: String  // "train" or "eval"
    public var step: Int
    public var epoch: Double
    public var loss: Double
    public var accuracy: Double? = nil
    public var learningRate: Double? = nil
    public var gradNorm: Double? = nil
    public var tokensPerSecond: Double? = nil
    public var elapsedSeconds: Double
}
