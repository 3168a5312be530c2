import Foundation
import QSTCLI
import QSTEngine
import QSTEngineCLI
import QSTNN
import QSTSide
#if canImport(Glibc)
import Glibc
#endif

/// `qst-tune --method lora`: LoRA adapters on the frozen base, trained with backpropagation through it,
/// with the same data, schedules, checkpoints, logs and run folder as the QST path.
extension Tune {
    func runLoRA(run: String, args inArgs: RunArguments, parallel: DataParallelRun) throws {
        var args = inArgs
        guard let data = args.data else { throw CommandError("--data is required") }
        let started = Date()
        let backbone = try FrozenModel(path: model, options: try engine.options())
        let gradientCheckpointing = loraArguments.gradientCheckpointing
        let tokenizer = try backbone.source.loadTokenizer()
        let training: TrainingConfig, lora: LoRAModel
        var resumed: (optimizer: AdamW, state: TrainerState)?
        if let resume {
            let ck = try LoRACheckpoint.load(run: resume, layerCount: backbone.config.numHiddenLayers, shape: backbone.blockShape)
            training = ck.training; resumed = (ck.optimizer, ck.state)
            lora = try LoRAModel(base: backbone, weights: ck.weights, gradientCheckpointing: gradientCheckpointing)
            note("resuming \(resume) at step \(ck.state.step) (hyper-parameters from the checkpoint)")
        } else {
            training = try trainingConfig()
            if TrainingCheckpoint.exists(run: run) {
                throw CommandError("\(run) already holds a run; use --resume \(run) or another -o")
            }
            lora = try LoRAModel.fresh(base: backbone, config: try loraArguments.config(seed: seed, baseModel: model), gradientCheckpointing: gradientCheckpointing)
        }
        if parallel.isLeader { try FileManager.default.createDirectory(atPath: run, withIntermediateDirectories: true) }
        func load(_ path: String) throws -> LoadedExamples {
            if let task = args.task {
                return try GLUETask.named(task).load(path: path, tokenizer: tokenizer, maxLength: training.maxLength, skipBad: args.skipBad)
            }
            return try RecordLoading.load(path: path, tokenizer: tokenizer, maxLength: training.maxLength, skipBad: args.skipBad)
        }
        var trainSet = try load(data)
        if let limit = args.trainLimit { trainSet.examples = Array(trainSet.examples.prefix(limit)) }
        let fingerprint = RunArguments.fingerprint(trainSet.examples)
        if let saved = args.trainFingerprint, saved != fingerprint {
            throw CommandError("the training data differs from the data \(run) was trained on; resuming needs the same data")
        }
        args.trainFingerprint = fingerprint
        if parallel.isLeader { try args.write(run: run) }
        let evalSet = try args.eval.map(load)
        let params = lora.weights.parameterCount
        note("LoRA r \(lora.weights.config.r), alpha \(lora.weights.config.alpha), targets " +
             "\(lora.weights.config.targets.map(\.rawValue).joined(separator: ",")): \(params) trainable parameters, " +
             "AdamW state \(Units.bytes(8 * params)), activations ≈ \(Units.bytes(lora.activationBytes(batch: training.batchSize, seqLen: training.maxLength)))" +
             (gradientCheckpointing ? " (gradient checkpointing)" : ""))
        let trainer = try LoRATrainer(model: lora, training: training, train: trainSet.examples, eval: evalSet?.examples ?? [],
                                      labelTokens: trainSet.labelTokens, run: run, resumed: resumed)
        trainer.reducer = parallel.reducer
        parallel.announceTermination(run: run)
        let log = parallel.isLeader ? try LogFile(path: run + "/log.jsonl") : nil
        let startStep = trainer.state.step
        trainer.onLog = { entry in
            if entry.kind == "train" { parallel.afterStep(entry.step) }
            guard let log else { return }
            log.append(entry)
            if entry.kind == "eval" {
                note("step \(entry.step): eval loss \(fmt(entry.loss))" + (entry.accuracy.map { ", accuracy \(pct($0))" } ?? ""))
            } else if entry.step % 10 == 0 || entry.step == trainer.totalSteps || entry.step - startStep <= 2 {
                note("step \(entry.step)/\(trainer.totalSteps) loss \(fmt(entry.loss)) \(Int(entry.tokensPerSecond ?? 0)) tok/s " +
                     "\(String(format: "%.2f", entry.elapsedSeconds)) s/step peak \(Units.bytes(MemoryStats.current().peakRSS))")
            }
        }
        let final = try trainer.runToEnd()
        guard let log else { return }
        let entries = log.readAll()
        try writeCurves(entries, to: run + "/curves.svg")
        // Training time only (the steps of this invocation), not evaluation or checkpoint writes.
        let seconds = entries.filter { $0.kind == "train" && $0.step > startStep }.reduce(0) { $0 + $1.elapsedSeconds }
        let peak = MemoryStats.current().peakRSS
        let summary = Summary(steps: trainer.state.step, trainExamples: trainSet.examples.count, finalEval: final,
                              zeroShotEval: nil, bestStep: trainer.state.bestStep, bestMetric: trainer.state.bestMetric,
                              lastTrainLoss: entries.last(where: { $0.kind == "train" })?.loss, trainSeconds: seconds,
                              tokensPerSecond: seconds > 0 ? Double(trainer.state.tokensSeen - (resumed?.state.tokensSeen ?? 0)) / seconds : 0,
                              peakRSS: peak, estimatedMemory: lora.activationBytes(batch: training.batchSize, seqLen: training.maxLength) + 16 * params,
                              totalSeconds: Date().timeIntervalSince(started), run: run,
                              dataParallel: parallel.describe(lora.weights.parameters))
        try TrainingCheckpoint.writeJSON(summary, to: run + "/summary.json")
        if json { try JSONOutput.print(summary); return }
        print("trained \(summary.steps) LoRA steps in \(Int(seconds)) s (\(Int(summary.tokensPerSecond)) tok/s), peak RSS \(Units.bytes(peak))")
        if let f = final { print("final eval: loss \(fmt(f.loss))" + (f.accuracy.map { ", accuracy \(pct($0))" } ?? "")) }
        print("adapters (PEFT layout): \(run)/best, \(run)/final; log: \(run)/log.jsonl")
    }
}
