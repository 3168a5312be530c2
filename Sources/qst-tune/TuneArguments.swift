import ArgumentParser
import QSTSide

/// `qst-tune`'s data options: what `run.json` records, so `--resume` needs only the run folder.
struct DataArguments: ParsableArguments {
    @Option(help: "Training data file.") var data: String?
    @Option(help: "Evaluation data file.") var eval: String?
    @Option(help: "GLUE task preset: sst2, rte, mrpc or cola.") var task: String?
    @Option(help: "Use at most this many training examples.") var trainLimit: Int?
    @Flag(help: "Skip malformed records (counted) instead of stopping.") var skipBad = false
}

/// `qst-tune`'s optimizer options: each one given overrides the preset's value.
struct OptimizerArguments: ParsableArguments {
    @Option(help: "Peak learning rate.") var lr: Double?
    @Option(help: "AdamW β1.") var beta1: Float?
    @Option(help: "AdamW β2.") var beta2: Float?
    @Option(help: "AdamW ε.") var adamEps: Float?
    @Option(help: "AdamW decoupled weight decay.") var weightDecay: Float?
    @Option(help: "Learning-rate schedule.") var schedule: LRSchedule?
    @Option(help: "Warm-up as a fraction of all steps.") var warmupRatio: Double?
    @Option(help: "Clip the global gradient norm to this (0 = off).") var maxGradNorm: Double?
    @Option(
        help:
            "QST: learning-rate multiplier for the side blocks (model.qst_layers.*; OPT model.decoder.qst_layers.*), a parameter group; e.g. 0.25 with --lr 2e-3 trains the blocks at 5e-4 and the downsamplers, gates, upsample and head at 2e-3 (default 1)."
    )
    var blockLrScale: Double?
    @Option(
        help:
            "QST: learning-rate multiplier for the layer gates (model.z.*; OPT model.decoder.z.*), a parameter group (default 1)."
    )
    var gateLrScale: Double?

    func apply(to t: inout TrainingConfig) {
        if let lr { t.learningRate = lr }
        if let beta1 { t.beta1 = beta1 }
        if let beta2 { t.beta2 = beta2 }
        if let adamEps { t.eps = adamEps }
        if let weightDecay { t.weightDecay = weightDecay }
        if let schedule { t.schedule = schedule }
        if let warmupRatio { t.warmupRatio = warmupRatio }
        if let maxGradNorm { t.maxGradNorm = maxGradNorm }
        if let blockLrScale { t.blockLearningRateScale = blockLrScale }
        if let gateLrScale { t.gateLearningRateScale = gateLrScale }
    }
}

/// `qst-tune --method lora`'s adapter options.
struct LoRAArguments: ParsableArguments {
    @Option(help: "LoRA rank r.") var loraR: Int = 8
    @Option(help: "LoRA alpha (scaling alpha / r).") var loraAlpha: Double = 16
    @Option(help: "LoRA dropout on each adapted projection's input.") var loraDropout: Float = 0.05
    @Option(
        help: "LoRA target modules: comma-separated q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj or all.")
    var loraTargets: String = "all"
    @Flag(help: "LoRA: keep only each layer's input and recompute its forward in backward.")
    var gradientCheckpointing = false

    func config(seed: UInt64?, baseModel: String) throws -> LoRAConfig {
        LoRAConfig(
            r: loraR, alpha: loraAlpha, dropout: loraDropout, targets: try LoRAConfig.parseTargets(loraTargets),
            seed: seed ?? 0, baseModel: baseModel)
    }
}

/// `--preset`: the hyper-parameters a run starts from.
enum TrainingPreset: String, CaseIterable, ExpressibleByArgument {
    case glue, instruct
    var config: TrainingConfig { self == .glue ? TrainingConfig() : TrainingConfig.instruct() }
}

/// `--method`: what is trained.
enum TrainingMethod: String, CaseIterable, ExpressibleByArgument {
    case qst, lora
}

/// `--head`: how the trained model predicts.
enum PredictionHead: String, CaseIterable, ExpressibleByArgument {
    case lm, classify
}

/// `--head-init`: where a new classification head starts.
enum HeadInitialisation: String, CaseIterable, ExpressibleByArgument {
    case labelWords = "label-words", random
}

extension LRSchedule: ExpressibleByArgument {}
extension HeadPooling: ExpressibleByArgument {}
extension TrainingConfig.BestMetric: ExpressibleByArgument {}
