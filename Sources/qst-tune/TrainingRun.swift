import Foundation
import QSTCLI
import QSTEngine
import QSTNN
import QSTSide
import QSTTokenizer
#if canImport(Glibc)
    import Glibc
#endif

/// A model ready to train: what `--method qst` (SideTune.swift) and `--method lora` (LoRATune.swift) prepare
/// differently. Everything else — data, run files, the trainer, progress, log, curves and summary — is
/// `Tune.train`'s, the same for both.
struct PreparedModel<Model: TrainableModel> {
    var model: Model
    var training: TrainingConfig
    /// The checkpoint's optimizer and trainer state when resuming.
    var resumed: (optimizer: AdamW, state: TrainerState)?
    /// GLUE examples carry class labels for a classification head (`--head classify`).
    var classifies = false
    /// summary.json's `estimatedMemory`, and the lines noted before training that explain the model's cost.
    var estimatedMemory: Int
    var notes: [String]
    var baseCache: BaseStateCache? = nil
    /// How the text summary names a step and the saved weights ("steps", "LoRA steps").
    var steps = "steps"
    var weights = "best weights"
}

extension Tune {
    /// The run as one process or as one rank of an mpirun job (only rank 0 writes files and output).
    func train(_ parallel: DataParallelRun) throws {
        guard let run = resume ?? output else { throw QSTError.option("give -o RUN (or --resume RUN)") }
        var args = runArguments(run: run)
        let lora = method == .lora || (resume != nil && LoRACheckpoint.isLoRARun(run))
        if lora {
            if args.cacheBase != nil {
                throw QSTError.option("--cache-base is for side networks with a pooling downsampler, not LoRA")
            }
            if head == .classify {
                throw QSTError.option(
                    "--head classify is for the QST side network only; LoRA predicts with label words (--head lm)")
            }
        }
        guard args.data != nil else { throw QSTError.option("--data is required") }
        let started = Date()
        let backbone = try FrozenModel(path: model, options: try engine.options())
        let tokenizer = try backbone.source.loadTokenizer()
        if lora {
            try train(
                try prepareLoRA(backbone: backbone, run: run), backbone: backbone, tokenizer: tokenizer, run: run,
                args: &args, parallel: parallel, started: started)
        } else {
            try train(
                try prepareSide(backbone: backbone, tokenizer: tokenizer, run: run, args: args, parallel: parallel),
                backbone: backbone,
                tokenizer: tokenizer, run: run, args: &args, parallel: parallel, started: started)
        }
    }

    /// The data arguments: as given, completed from run.json when resuming (it is read unless given again).
    func runArguments(run: String) -> RunArguments {
        let d = dataArguments
        var args = RunArguments(
            data: d.data, eval: d.eval, task: d.task, trainLimit: d.trainLimit, skipBad: d.skipBad,
            trainFingerprint: nil, cacheBase: cacheBase)
        if resume != nil, let saved = RunArguments.read(run: run) {
            args.data = args.data ?? saved.data; args.eval = args.eval ?? saved.eval;
            args.task = args.task ?? saved.task
            args.trainLimit = args.trainLimit ?? saved.trainLimit; args.skipBad = args.skipBad || saved.skipBad
            args.trainFingerprint = saved.trainFingerprint
            args.cacheBase = args.cacheBase ?? saved.cacheBase
        }
        return args
    }

    /// Trains a prepared model: data, run files, the trainer with its log and progress, curves and summary.
    func train<Model: TrainableModel>(
        _ prepared: PreparedModel<Model>, backbone: FrozenModel, tokenizer: Tokenizer,
        run: String, args: inout RunArguments, parallel: DataParallelRun,
        started: Date
    ) throws {
        let training = prepared.training
        if parallel.isLeader { try FileManager.default.createDirectory(atPath: run, withIntermediateDirectories: true) }
        let task = args.task, skipBad = args.skipBad
        func load(_ path: String) throws -> LoadedExamples {
            if let task {
                return try GLUETask.named(task).load(
                    path: path, tokenizer: tokenizer, maxLength: training.maxLength,
                    skipBad: skipBad, head: prepared.classifies)
            }
            return try RecordLoading.load(
                path: path, tokenizer: tokenizer, maxLength: training.maxLength, skipBad: skipBad)
        }
        var trainSet = try load(args.data ?? "")
        if let trainLimit = args.trainLimit { trainSet.examples = Array(trainSet.examples.prefix(trainLimit)) }
        let fingerprint = RunArguments.fingerprint(trainSet.examples)
        if let saved = args.trainFingerprint, saved != fingerprint {
            throw QSTError(
                "the training data differs from the data \(run) was trained on (fingerprint \(fingerprint), "
                    + "expected \(saved)); resuming needs the same --data, --task and --train-limit",
                kind: .incompatibleInputs)
        }
        args.trainFingerprint = fingerprint
        if parallel.isLeader {
            try args.write(run: run)
            try BaseIdentity.of(backbone.source).write(run: run)
        }
        let evalSet = try args.eval.map(load)
        note(
            "training examples: \(trainSet.examples.count) (skipped \(trainSet.skippedBad) bad, truncated "
                + "\(trainSet.truncated) to \(training.maxLength) tokens, of which \(trainSet.droppedTooLong) had nothing left to train on and were dropped)"
                + (evalSet.map {
                    "; evaluation examples: \($0.examples.count) (skipped \($0.skippedBad), truncated \($0.truncated))"
                } ?? ""))
        prepared.notes.forEach(note)

        let trainer = try Trainer(
            model: prepared.model, training: training, train: trainSet.examples,
            eval: evalSet?.examples ?? [], labelTokens: trainSet.labelTokens, run: run,
            resumed: prepared.resumed)
        trainer.reducer = parallel.reducer
        parallel.announceTermination(run: run)
        var zeroShot: EvaluationResult?
        if evalBase, let evalSet {
            let subset = training.evalLimit > 0 ? Array(evalSet.examples.prefix(training.evalLimit)) : evalSet.examples
            let z = try Evaluation.run(
                model: prepared.model, examples: subset, labelTokens: trainSet.labelTokens,
                batchSize: training.batchSize, baseOnly: true, reducer: parallel.reducer)
            zeroShot = z
            note("frozen model alone: loss \(fmt(z.loss))" + (z.accuracy.map { ", accuracy \(pct($0))" } ?? ""))
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
                note(
                    "step \(entry.step): eval loss \(fmt(entry.loss))"
                        + (entry.accuracy.map { ", accuracy \(pct($0))" } ?? ""))
                return
            }
            let done = entry.step - startStep
            let elapsed = Date().timeIntervalSince(loopStart)
            let eta = done > 0 ? elapsed / Double(done) * Double(trainer.totalSteps - entry.step) : 0
            let detail =
                "loss \(fmt(entry.loss)) lr \(String(format: "%.2e", entry.learningRate ?? 0)) "
                + "\(Int(entry.tokensPerSecond ?? 0)) tok/s peak \(Units.bytes(peak))"
            if tty {
                bar.update(entry.step, detail: detail)
            } else if entry.step % 10 == 0 || entry.step == trainer.totalSteps {
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
        let tokens = trainer.state.tokensSeen - (prepared.resumed?.state.tokensSeen ?? 0)
        let baseCache = prepared.baseCache
        let summary = Summary(
            steps: trainer.state.step, trainExamples: trainSet.examples.count,
            finalEval: final, zeroShotEval: zeroShot, bestStep: trainer.state.bestStep,
            bestMetric: trainer.state.bestMetric,
            lastTrainLoss: trainEntries.last?.loss, trainSeconds: seconds,
            tokensPerSecond: seconds > 0 ? Double(tokens) / seconds : 0,
            peakRSS: peak, estimatedMemory: prepared.estimatedMemory,
            totalSeconds: Date().timeIntervalSince(started),
            run: run, baseCache: baseCache?.stats, baseCacheBytes: baseCache?.storedBytes,
            dataParallel: parallel.describe(prepared.model.trainableParameters))
        try TrainingCheckpoint.writeJSON(summary, to: run + "/summary.json")
        if json { try JSONOutput.print(summary); return }
        print(
            "trained \(summary.steps) \(prepared.steps) in \(Int(seconds)) s of training (\(Int(summary.tokensPerSecond)) tok/s; "
                + "\(Int(Date().timeIntervalSince(loopStart))) s with evaluation), "
                + "peak RSS \(Units.bytes(peak)) (estimate \(Units.bytes(prepared.estimatedMemory)))")
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
            print(
                "base-state cache: \(c.stats.hits) examples read, \(c.stats.misses) computed and stored; "
                    + "\(c.storedExamples) examples, \(Units.bytes(c.storedBytes)) in \(c.directory)")
        }
        print(
            "\(prepared.weights): \(run)/best (step \(trainer.state.bestStep ?? trainer.state.step)), final: \(run)/final, "
                + "log: \(run)/log.jsonl, curves: \(run)/curves.svg")
    }
}
