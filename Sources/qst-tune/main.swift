import ArgumentParser
import Foundation
import QSTCLI
import QSTEngine
import QSTEngineCLI
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
        Data: JSONL records {"text"}, {"prompt","completion"} or {"messages":[…]} (chat template, loss on assistant turns), an Alpaca JSON array, or a GLUE TSV with --task sst2|rte|mrpc|cola (loss on the label word, accuracy at evaluation).

        Examples:
          qst-tune smollm2.qst4 side/ --task sst2 --data sst2/train.tsv --eval sst2/dev.tsv -o run/ --steps 300
          qst-tune smollm2.qst4 side/ --preset instruct --data alpaca.json -o run/ --epochs 1
          qst-tune smollm2.qst4 --resume run/                      continue an interrupted run
          qst-tune smollm2.qst4 side-avgpool/ --task sst2 --data train.tsv -o run/ --epochs 3 --cache-base cache/
                                  (pooling downsampler: later epochs skip the frozen forward)
          qst-tune smollm2.qst4 side/ --task rte --head classify --data rte/train.tsv --eval rte/dev.tsv -o run/
                                       (a trainable K-way head on the side network's output instead of label words)

        Started by mpirun (Open MPI), the ranks split every batch and sum gradients: the same global batch and weights as one process up to summation order; rank 0 alone writes (README, data parallelism):
          mpirun -np 2 --hostfile hosts qst-tune smollm2.qst4 side/ --task sst2 --data train.tsv -o run/
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
    @Option(name: [.customLong("early-stopping"), .customLong("patience")],
            help: "Stop after N evaluations without improvement (--patience is the same option).") var earlyStopping: Int?
    @Flag(help: "Also evaluate the frozen model alone (zero-shot) before training.") var evalBase = false
    @OptionGroup var format: OutputFormat
    @Option(help: "Benchmark instead of training: N timed steps of each mode on random batch × max-length tokens.")
    var benchmark: Int?
    @Flag(help: "With --benchmark: label only the last position (classification) instead of every token.")
    var benchmarkLastOnly = false
    @Option(help: "What to train: qst (a side network, default) or lora (adapters inside the frozen base, backprop through it).")
    var method: TrainingMethod = .qst
    @OptionGroup(title: "LoRA") var loraArguments: LoRAArguments
    @Option(help: "Store the frozen base's pooled states per example in this folder (zstd) the first time an example is seen and reuse them afterwards, skipping the frozen forward (avgpool/maxpool downsamplers only; Formats/BASECACHE.md).")
    var cacheBase: String?
    @Option(help: "Prediction head: lm (label words through the frozen LM head, default) or classify (a trainable linear head over the side network's output at the last token; needs --task).")
    var head: PredictionHead = .lm
    @Option(help: "With --head classify: number of classes K (default: the task's; 1 = regression, not offered by the GLUE tasks here).")
    var numLabels: Int?
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
        try t.validate()
        return t
    }

    /// `--method lora` trains adapters inside the base: options that only mean something for a side network
    /// are refused rather than silently ignored.
    func refuseOptionsLoRAIgnores() throws {
        guard method == .lora else { return }
        if let side { throw CommandError("--method lora takes no side network folder (got \(side)); it is for --method qst") }
        if evalBase { throw CommandError("--eval-base is only for --method qst (use qst-eval on the base model instead)") }
        if benchmark != nil { throw CommandError("--benchmark measures the QST side network; it is not available with --method lora") }
    }

    func runBenchmark(_ repeats: Int) throws {
        guard let side else { throw CommandError("give the side network folder") }
        let training = try trainingConfig()
        let backbone = try FrozenModel(path: model, options: try engine.options())
        var weights = try SideWeightsIO.load(directory: side)
        if head == .classify { weights = try ClassificationHead.attach(to: weights, numLabels: numLabels ?? 2, seed: training.seed) }
        let sideModel = try SideModel(weights: weights, backbone: backbone)
        let r = try SideBenchmark.run(model: sideModel, batch: training.batchSize, seqLen: training.maxLength,
                                      repeats: repeats, labelEveryToken: !benchmarkLastOnly, training: training,
                                      peakRSS: { MemoryStats.current().peakRSS })
        if json { try JSONOutput.print(r); return }
        let rows = r.batch * r.seqLen
        let trainingPaths = backbone.matmulRoutes(rows: rows, rowIndependent: true)
        print("cpu: \(CPUKernels.describe()); kernel paths: training forward (\(trainingPaths)), " +
              "plain forward (\(backbone.matmulRoutes(rows: rows)))")
        print("batch \(r.batch) × \(r.seqLen), labelled fraction \(String(format: "%.3f", r.labelledFraction)), \(repeats) repeats")
        print("frozen forward only:  \(Int(r.backboneForwardTokensPerSecond)) tok/s")
        print("evaluation (no grad): \(Int(r.evaluationTokensPerSecond)) tok/s")
        print("training step:        \(Int(r.trainingTokensPerSecond)) tok/s  (\(String(format: "%.2f", r.trainingVsBackboneForward))× forward, " +
              "\(String(format: "%.2f", r.trainingVsEvaluation))× evaluation)")
        print("by CPU time:          training \(String(format: "%.2f", r.cpuTrainingVsBackboneForward))× forward, " +
              "\(String(format: "%.2f", r.cpuTrainingVsEvaluation))× evaluation")
        print("peak RSS:             \(Units.bytes(r.peakRSSBytes))")
    }

    func run() throws {
        try refuseOptionsLoRAIgnores()
        if let benchmark { return try runBenchmark(benchmark) }
        try DataParallelRun.execute(tool: "qst-tune") { try train($0) }
    }

    /// The run as one process or as one rank of an mpirun job (only rank 0 writes files and output).
    func train(_ parallel: DataParallelRun) throws {
        guard let run = resume ?? output else { throw CommandError("give -o RUN (or --resume RUN)") }
        // A resumed run reads its data arguments from run.json unless given again.
        let d = dataArguments
        var args = RunArguments(data: d.data, eval: d.eval, task: d.task, trainLimit: d.trainLimit, skipBad: d.skipBad,
                                trainFingerprint: nil, cacheBase: cacheBase)
        if resume != nil, let saved = RunArguments.read(run: run) {
            args.data = args.data ?? saved.data; args.eval = args.eval ?? saved.eval; args.task = args.task ?? saved.task
            args.trainLimit = args.trainLimit ?? saved.trainLimit; args.skipBad = args.skipBad || saved.skipBad
            args.trainFingerprint = saved.trainFingerprint
            args.cacheBase = args.cacheBase ?? saved.cacheBase
        }
        if method == .lora || (resume != nil && LoRACheckpoint.isLoRARun(run)) {
            if args.cacheBase != nil { throw CommandError("--cache-base is for side networks with a pooling downsampler, not LoRA") }
            if head == .classify {
                throw CommandError("--head classify is for the QST side network only; LoRA predicts with label words (--head lm)")
            }
            return try runLoRA(run: run, args: args, parallel: parallel)
        }
        guard let data = args.data else { throw CommandError("--data is required") }
        let task = args.task, eval = args.eval, trainLimit = args.trainLimit, skipBad = args.skipBad
        let started = Date()
        let backbone = try FrozenModel(path: model, options: try engine.options())
        let tokenizer = try backbone.source.loadTokenizer()
        var weights: SideWeights, training: TrainingConfig
        var resumed: (optimizer: AdamW, state: TrainerState)?
        if let resume {
            let ck = try TrainingCheckpoint.load(run: resume)
            weights = ck.weights; training = ck.training; resumed = (ck.optimizer, ck.state)
            note("resuming \(resume) at step \(ck.state.step) (hyper-parameters from the checkpoint)")
        } else {
            guard let side else { throw CommandError("give the side network folder (from qst-init-side)") }
            weights = try SideWeightsIO.load(directory: side)
            training = try trainingConfig()
            if TrainingCheckpoint.exists(run: run) {
                throw CommandError("\(run) already holds a run; use --resume \(run) or another -o")
            }
        }
        if resume == nil, head == .classify {
            weights = try ClassificationHead.attach(to: weights, numLabels: try classifyLabels(task: task), seed: training.seed)
        }
        let useHead = weights.config.numLabels != nil
        if useHead, task == nil { throw CommandError("the classification head trains on a GLUE task: give --task") }
        if parallel.isLeader { try FileManager.default.createDirectory(atPath: run, withIntermediateDirectories: true) }
        let sideModel = try SideModel(weights: weights, backbone: backbone)
        var baseCache: BaseStateCache?
        if let dir = args.cacheBase {
            // Ranks see different examples each epoch; one shared cache folder would need cross-rank locking.
            if let mpi = parallel.mpi, mpi.size > 1 {
                throw CommandError("--cache-base works in a single process only (this job has \(mpi.size) ranks)")
            }
            let identity = try BaseCacheIdentity.of(model: backbone, config: weights.config, maxLength: training.maxLength)
            let cache = try BaseStateCache(directory: dir, identity: identity, config: weights.config,
                                           sideOrigin: resume ?? side ?? "side network")
            sideModel.frozenStateProvider = cache
            baseCache = cache
            note("base-state cache \(dir): \(cache.storedExamples) examples stored (\(Units.bytes(cache.storedBytes)))")
        }

        func load(_ path: String) throws -> LoadedExamples {
            if let task { return try GLUETask.named(task).load(path: path, tokenizer: tokenizer, maxLength: training.maxLength,
                                                               skipBad: skipBad, head: useHead) }
            return try RecordLoading.load(path: path, tokenizer: tokenizer, maxLength: training.maxLength, skipBad: skipBad)
        }
        var trainSet = try load(data)
        if let trainLimit { trainSet.examples = Array(trainSet.examples.prefix(trainLimit)) }
        let fingerprint = RunArguments.fingerprint(trainSet.examples)
        if let saved = args.trainFingerprint, saved != fingerprint {
            throw CommandError("the training data differs from the data \(run) was trained on (fingerprint \(fingerprint), " +
                               "expected \(saved)); resuming needs the same --data, --task and --train-limit")
        }
        args.trainFingerprint = fingerprint
        if parallel.isLeader {
            try args.write(run: run)
            try BaseIdentity.of(backbone.source).write(run: run)
        }
        let evalSet = try eval.map(load)
        note("training examples: \(trainSet.examples.count) (skipped \(trainSet.skippedBad) bad, truncated " +
             "\(trainSet.truncated) to \(training.maxLength) tokens, of which \(trainSet.droppedTooLong) had nothing left to train on and were dropped)" +
             (evalSet.map { "; evaluation examples: \($0.examples.count) (skipped \($0.skippedBad), truncated \($0.truncated))" } ?? ""))

        let estimate = TrainingMemoryEstimate(config: weights.config, parameterCount: weights.parameterCount,
                                              batch: training.batchSize, seqLen: training.maxLength,
                                              backboneBytes: backbone.source.weightBytes)
        note("memory estimate at batch \(training.batchSize) × \(training.maxLength):")
        for (name, bytes) in estimate.rows { note("  " + name.padding(toLength: 26, withPad: " ", startingAt: 0) + Units.bytes(bytes)) }

        let trainer = try SideTrainer(model: sideModel, training: training, train: trainSet.examples,
                                      eval: evalSet?.examples ?? [], labelTokens: trainSet.labelTokens, run: run,
                                      resumed: resumed)
        trainer.reducer = parallel.reducer
        parallel.announceTermination(run: run)
        var zeroShot: EvaluationResult?
        if evalBase, let evalSet {
            let subset = training.evalLimit > 0 ? Array(evalSet.examples.prefix(training.evalLimit)) : evalSet.examples
            zeroShot = try Evaluation.run(model: sideModel, examples: subset, labelTokens: trainSet.labelTokens,
                                          batchSize: training.batchSize, baseOnly: true, reducer: parallel.reducer)
            note("frozen model alone: loss \(fmt(zeroShot!.loss))" + (zeroShot!.accuracy.map { ", accuracy \(pct($0))" } ?? ""))
        }

        let log = parallel.isLeader ? try LogFile(path: run + "/log.jsonl") : nil
        let bar = ProgressBar(total: trainer.totalSteps, label: "training")
        let tty = isatty(2) != 0
        let loopStart = Date(), startStep = trainer.state.step
        trainer.onLog = { (entry: TrainingLogEntry) in
            if entry.kind == "train" { parallel.afterStep(entry.step) }
            guard let log else { return }
            log.append(entry)
            let peak = MemoryStats.current().peakRSS
            if entry.kind == "eval" {
                bar.finish()
                note("step \(entry.step): eval loss \(fmt(entry.loss))" + (entry.accuracy.map { ", accuracy \(pct($0))" } ?? ""))
                return
            }
            let done = entry.step - startStep
            let elapsed = Date().timeIntervalSince(loopStart)
            let eta = done > 0 ? elapsed / Double(done) * Double(trainer.totalSteps - entry.step) : 0
            let detail = "loss \(fmt(entry.loss)) lr \(String(format: "%.2e", entry.learningRate ?? 0)) " +
                "\(Int(entry.tokensPerSecond ?? 0)) tok/s peak \(Units.bytes(peak))"
            if tty { bar.update(entry.step, detail: detail) } else if entry.step % 10 == 0 || entry.step == trainer.totalSteps {
                note("step \(entry.step)/\(trainer.totalSteps) \(detail) eta \(Int(eta))s")
            }
        }
        let final = try trainer.runToEnd()
        guard let log else { return }
        bar.finish()
        let entries = log.readAll()
        try writeCurves(entries, to: run + "/curves.svg")
        let peak = MemoryStats.current().peakRSS
        let trainEntries = entries.filter { $0.kind == "train" }
        // Training time only: the optimizer steps of this invocation, not evaluation or checkpoint writes.
        let seconds = trainEntries.filter { $0.step > startStep }.reduce(0) { $0 + $1.elapsedSeconds }
        let tokens = trainer.state.tokensSeen
        let summary = Summary(steps: trainer.state.step, trainExamples: trainSet.examples.count,
                              finalEval: final, zeroShotEval: zeroShot, bestStep: trainer.state.bestStep,
                              bestMetric: trainer.state.bestMetric,
                              lastTrainLoss: trainEntries.last?.loss, trainSeconds: seconds,
                              tokensPerSecond: seconds > 0 ? Double(tokens - (resumed?.state.tokensSeen ?? 0)) / seconds : 0,
                              peakRSS: peak, estimatedMemory: estimate.total, totalSeconds: Date().timeIntervalSince(started),
                              run: run, baseCache: baseCache?.stats, baseCacheBytes: baseCache?.storedBytes,
                              dataParallel: parallel.describe(weights.parameters))
        try TrainingCheckpoint.writeJSON(summary, to: run + "/summary.json")
        if json { try JSONOutput.print(summary); return }
        print("trained \(summary.steps) steps in \(Int(seconds)) s of training (\(Int(summary.tokensPerSecond)) tok/s; " +
              "\(Int(Date().timeIntervalSince(loopStart))) s with evaluation), " +
              "peak RSS \(Units.bytes(peak)) (estimate \(Units.bytes(estimate.total)))")
        if let f = final {
            var line = "final eval: loss \(fmt(f.loss))"
            if let a = f.accuracy { line += ", accuracy \(pct(a))" }
            if let z = zeroShot {
                line += "; frozen model alone: loss \(fmt(z.loss))"
                if let a = z.accuracy { line += ", accuracy \(pct(a))" }
            }
            print(line)
        }
        if let c = baseCache {
            print("base-state cache: \(c.stats.hits) examples read, \(c.stats.misses) computed and stored; " +
                  "\(c.storedExamples) examples, \(Units.bytes(c.storedBytes)) in \(c.directory)")
        }
        print("best weights: \(run)/best (step \(trainer.state.bestStep ?? trainer.state.step)), final: \(run)/final, " +
              "log: \(run)/log.jsonl, curves: \(run)/curves.svg")
    }

    /// K for `--head classify`: `--num-labels`, else the task's class count.
    func classifyLabels(task: String?) throws -> Int {
        guard let task else { throw CommandError("--head classify needs --task (sst2, rte, mrpc or cola)") }
        let classes = try GLUETask.named(task).labelWords.count
        let k = numLabels ?? classes
        guard k == classes else {
            throw CommandError("--num-labels \(k): task \(task) has \(classes) classes" +
                               (k == 1 ? " (regression, K = 1, needs a task with real-valued labels such as STS-B)" : ""))
        }
        return k
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
            series.append(.init(name: "evaluation loss", points: evals.map { (Double($0.step), $0.loss) }, color: "#d62728"))
        }
        if evals.contains(where: { $0.accuracy != nil }) {
            series.append(.init(name: "evaluation accuracy", points: evals.compactMap { e in e.accuracy.map { (Double(e.step), $0) } },
                                color: "#2ca02c"))
        }
        try SVGChart(title: "qst-tune", xLabel: "optimizer step", yLabel: "loss / accuracy", series: series).write(to: path)
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
