import ArgumentParser
import Foundation
import QSTCLI
import QSTEngine
import QSTEngineCLI
import QSTEvaluation
import QSTNN
import QSTSide
#if canImport(Glibc)
    import Glibc
#endif

struct Tune: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qst-tune",
        abstract: "Train a QST side network beside a frozen (NF4) base model.",
        discussion: """
            Data: JSONL records {"text"}, {"prompt","completion"} or {"messages":[…]} (chat template, loss on assistant turns), an Alpaca JSON array, or a GLUE TSV with --task sst2|rte|mrpc|cola (loss on the label word, accuracy at evaluation; --head classify trains a K-way head instead).

            Examples:
              qst-tune smollm2.qst4 side/ --task sst2 --data sst2/train.tsv \\
                  --eval sst2/dev.tsv -o run/ --steps 300
              qst-tune smollm2.qst4 side/ --preset instruct --data alpaca.json -o run/
              qst-tune smollm2.qst4 --resume run/          # continue an interrupted run
              # keep the lowest held-out loss; stop after 3 evaluations without a lower one
              qst-tune smollm2.qst4 side/ --task sst2 --data train.tsv --eval held.tsv \\
                  -o run/ --eval-every 250 --patience 3 --best-metric loss
              # a pooling downsampler: later epochs skip the frozen forward
              qst-tune smollm2.qst4 side-avgpool/ --task sst2 --data train.tsv -o run/ \\
                  --epochs 3 --cache-base cache/
              # a trainable K-way head on the side network's output instead of label words
              # (starts as the label words' LM-head rows: the zero-shot classifier)
              qst-tune smollm2.qst4 side/ --task rte --head classify --data rte/train.tsv \\
                  --eval rte/dev.tsv -o run/
              # LoRA adapters inside the base instead of a side network
              qst-tune smollm2.qst4 --method lora --task sst2 --data train.tsv -o lora-run/

            Started by mpirun (Open MPI), the ranks split every batch and sum gradients: the same global batch and weights as one process up to summation order; rank 0 alone writes (README, data parallelism):
              mpirun -np 2 --hostfile hosts qst-tune smollm2.qst4 side/ --task sst2 \\
                  --data train.tsv -o run/
            """)

    @OptionGroup var base: ModelArgument
    @Argument(help: "The side network folder from qst-init-side (not needed with --resume).")
    var side: String?
    @OptionGroup(title: "Data") var dataArguments: DataArguments
    @Option(name: [.short, .customLong("output")], help: "Run folder (checkpoints, best/, final/, log, curves).")
    var output: String?
    @Option(help: "Continue the run in this folder from its last checkpoint.") var resume: String?
    @Option(help: "Hyper-parameter preset: glue (lr 5e-4, linear, 6% warm-up) or instruct (2e-4, constant, clip 0.3).")
    var preset: TrainingPreset = .glue
    @OptionGroup(title: "Optimizer") var optimizer: OptimizerArguments
    @Option(help: "Micro-batches per optimizer step.") var gradAccum: Int?
    @Option(help: "Sequences per micro-batch.") var batchSize: Int?
    @Option(help: "Longer sequences are truncated to this many tokens.") var maxLength: Int?
    @Option(help: "Passes over the training data.") var epochs: Int?
    @Option(help: "Optimizer steps (overrides --epochs).") var steps: Int?
    @Option(help: "Seed of the data order and dropout.") var seed: UInt64?
    @Flag(help: "Do not group batches by length.") var noGroupByLength = false
    @Option(help: "Evaluate every N steps (0 = at the end only).") var evalEvery: Int?
    @Option(help: "Evaluate on at most this many examples.") var evalLimit: Int?
    @Option(help: "Checkpoint every N steps (0 = at the end only).") var saveEvery: Int?
    @Option(
        name: [.customLong("early-stopping"), .customLong("patience")],
        help: "Stop after N evaluations without improvement (--patience is the same option).") var earlyStopping: Int?
    @Option(
        help:
            "What run/best and --patience follow: accuracy (when classifying, else the loss; default) or loss (steadier on a small evaluation set)."
    )
    var bestMetric: TrainingConfig.BestMetric?
    @Flag(help: "Also evaluate the frozen model alone (zero-shot) before training.") var evalBase = false
    @OptionGroup var format: OutputFormat
    @Option(help: "Benchmark instead of training: N timed steps of each mode on random batch × max-length tokens.")
    var benchmark: Int?
    @Flag(help: "With --benchmark: label only the last position (classification) instead of every token.")
    var benchmarkLastOnly = false
    @Option(
        help:
            "What to train: qst (a side network, default) or lora (adapters inside the frozen base, backprop through it)."
    )
    var method: TrainingMethod = .qst
    @OptionGroup(title: "LoRA") var loraArguments: LoRAArguments
    @Option(
        help:
            "Store the frozen base's pooled states per example in this folder (zstd) the first time an example is seen and reuse them afterwards, skipping the frozen forward (avgpool/maxpool downsamplers only; Formats/BASECACHE.md)."
    )
    var cacheBase: String?
    @Option(
        help:
            "Prediction head: lm (label words through the frozen LM head, default) or classify (a trainable linear head over the side network's output at the last token; needs --task)."
    )
    var head: PredictionHead = .lm
    @Option(
        help:
            "With --head classify: number of classes K (default: the task's; 1 = regression, not offered by the GLUE tasks here)."
    )
    var numLabels: Int?
    @Option(
        help:
            "With --head classify: the head's start — label-words (the frozen LM head's rows of the task's label words, zero bias: step 0 is the zero-shot classifier) or random (U(±1/√d), as nn.Linear)."
    )
    var headInit: HeadInitialisation = .labelWords
    @Option(
        help:
            "With --head classify: what the head reads — last (the side network's output at the last prompt token) or mean (its mean over the prompt's tokens)."
    )
    var headPool: HeadPooling = .last
    @OptionGroup(title: "Engine") var engine: EngineArguments

    var model: String { base.model }
    var json: Bool { format.json }

    func trainingConfig() throws -> TrainingConfig {
        var t = preset.config
        optimizer.apply(to: &t)
        if let gradAccum { t.gradAccumulation = gradAccum }
        if let batchSize { t.batchSize = batchSize }
        if let maxLength { t.maxLength = maxLength }
        if let epochs { t.epochs = epochs }
        if let steps { t.maxSteps = steps }
        if let seed { t.seed = seed }
        if noGroupByLength { t.groupByLength = false }
        if let evalEvery { t.evalEvery = evalEvery }
        if let evalLimit { t.evalLimit = evalLimit }
        if let saveEvery { t.saveEvery = saveEvery }
        if let earlyStopping { t.earlyStoppingPatience = earlyStopping }
        if let bestMetric { t.bestMetric = bestMetric }
        try t.validate()
        return t
    }

    /// `--method lora` trains adapters inside the base: options that only mean something for a side network
    /// are refused rather than silently ignored.
    func refuseOptionsLoRAIgnores() throws {
        guard method == .lora else { return }
        if let side {
            throw QSTError.option("--method lora takes no side network folder (got \(side)); it is for --method qst")
        }
        if evalBase {
            throw QSTError.option("--eval-base is only for --method qst (use qst-eval on the base model instead)")
        }
        if benchmark != nil {
            throw QSTError.option("--benchmark measures the QST side network; it is not available with --method lora")
        }
        if optimizer.blockLrScale != nil {
            throw QSTError.option("--block-lr-scale scales the side network's blocks; it is for --method qst")
        }
        if optimizer.gateLrScale != nil {
            throw QSTError.option("--gate-lr-scale scales the side network's gates; it is for --method qst")
        }
    }

    /// `--head-pool` shapes a classification head when it is attached: refused where none is attached (no
    /// `--head classify`, a resumed run whose head is fixed, LoRA) rather than silently ignored.
    func refuseHeadPoolWithoutNewHead() throws {
        guard headPool != .last else { return }
        if method == .lora { throw QSTError.option("--head-pool is for a QST side network's head (--method qst)") }
        if head != .classify { throw QSTError.option("--head-pool needs --head classify") }
        if resume != nil {
            throw QSTError.option("--head-pool cannot change a resumed run's head (its side_config.json fixes it)")
        }
    }

    func runBenchmark(_ repeats: Int) throws {
        guard let side else { throw QSTError.option("give the side network folder") }
        let training = try trainingConfig()
        let backbone = try FrozenModel(path: model, options: try engine.options())
        var weights = try SideWeightsIO.load(directory: side)
        if head == .classify {
            weights = try ClassificationHead.attach(to: weights, numLabels: numLabels ?? 2, seed: training.seed)
        }
        let sideModel = try SideModel(weights: weights, backbone: backbone)
        let r = try SideBenchmark.run(
            model: sideModel, batch: training.batchSize, seqLen: training.maxLength,
            repeats: repeats, labelEveryToken: !benchmarkLastOnly, training: training,
            peakRSS: { MemoryStats.current().peakRSS })
        if json { try JSONOutput.print(r); return }
        let rows = r.batch * r.seqLen
        let trainingPaths = backbone.matmulRoutes(rows: rows, rowIndependent: true)
        print(
            "cpu: \(CPUKernels.describe()); kernel paths: training forward (\(trainingPaths)), "
                + "plain forward (\(backbone.matmulRoutes(rows: rows)))")
        print(
            "batch \(r.batch) × \(r.seqLen), labelled fraction \(String(format: "%.3f", r.labelledFraction)), \(repeats) repeats"
        )
        print("frozen forward only:  \(Int(r.backboneForwardTokensPerSecond)) tok/s")
        print("evaluation (no grad): \(Int(r.evaluationTokensPerSecond)) tok/s")
        print(
            "training step:        \(Int(r.trainingTokensPerSecond)) tok/s  (\(String(format: "%.2f", r.trainingVsBackboneForward))× forward, "
                + "\(String(format: "%.2f", r.trainingVsEvaluation))× evaluation)")
        print(
            "by CPU time:          training \(String(format: "%.2f", r.cpuTrainingVsBackboneForward))× forward, "
                + "\(String(format: "%.2f", r.cpuTrainingVsEvaluation))× evaluation")
        print("peak RSS:             \(Units.bytes(r.peakRSSBytes))")
    }

    func run() throws {
        try refuseOptionsLoRAIgnores()
        try refuseHeadPoolWithoutNewHead()
        if let benchmark { return try runBenchmark(benchmark) }
        try DataParallelRun.execute(tool: "qst-tune") { try train($0) }
    }

    struct Summary: Codable {
        var steps: Int, trainExamples: Int
        var finalEval: EvaluationResult?, zeroShotEval: EvaluationResult?
        var bestStep: Int?, bestMetric: Double?, lastTrainLoss: Double?
        var trainSeconds: Double, tokensPerSecond: Double, peakRSS: Int, estimatedMemory: Int, totalSeconds: Double
        var run: String
        var baseCache: BaseStateCache.Stats? = nil, baseCacheBytes: Int? = nil
        var dataParallel: DataParallelSummary? = nil
    }

    func writeCurves(_ entries: [TrainingLogEntry], to path: String) throws {
        let train = entries.filter { $0.kind == "train" }
        // Smooth the noisy per-step loss with a running mean over 10 steps.
        var smoothed: [(Double, Double)] = []
        for (i, e) in train.enumerated() {
            let window = train[max(0, i - 9)...i]
            smoothed.append((Double(e.step), window.reduce(0) { $0 + $1.loss } / Double(window.count)))
        }
        var series = [SVGChart.Series(name: "training loss (mean of 10 steps)", points: smoothed, color: "#1f77b4")]
        let evals = entries.filter { $0.kind == "eval" }
        if !evals.isEmpty {
            series.append(
                .init(name: "evaluation loss", points: evals.map { (Double($0.step), $0.loss) }, color: "#d62728"))
        }
        if evals.contains(where: { $0.accuracy != nil }) {
            series.append(
                .init(
                    name: "evaluation accuracy",
                    points: evals.compactMap { e in e.accuracy.map { (Double(e.step), $0) } },
                    color: "#2ca02c"))
        }
        try SVGChart(title: "qst-tune", xLabel: "optimizer step", yLabel: "loss / accuracy", series: series).write(
            to: path)
    }
}

/// Progress notes on stderr; in an mpirun job only rank 0 prints them.
func note(_ s: String) {
    guard ["0", nil].contains(ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_RANK"]) else { return }
    FileHandle.standardError.write(Data((s + "\n").utf8))
}
func fmt(_ x: Double) -> String { String(format: "%.4f", x) }
func pct(_ x: Double) -> String { String(format: "%.2f%%", 100 * x) }

ToolRunner.main(Tune.self)
