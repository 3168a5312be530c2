import Foundation
import QSTCLI
import QSTEngine
import QSTNN
import QSTSide

/// `qst-tune --method qst` (the default): a side network from qst-init-side (or the run's checkpoint) beside
/// the frozen base, with an optional classification head and base-state cache.
extension Tune {
    func prepareSide(
        backbone: FrozenModel, tokenizer: any ExampleTokenizer, run: String, args: RunArguments,
        parallel: DataParallelRun
    ) throws -> PreparedModel<SideModel> {
        var weights: SideWeights, training: TrainingConfig
        var resumed: (optimizer: AdamW, state: TrainerState)?
        if let resume {
            let ck = try TrainingCheckpoint.load(run: resume)
            weights = ck.weights; training = ck.training; resumed = (ck.optimizer, ck.state)
            note("resuming \(resume) at step \(ck.state.step) (hyper-parameters from the checkpoint)")
        } else {
            guard let side else { throw QSTError.option("give the side network folder (from qst-init-side)") }
            weights = try SideWeightsIO.load(directory: side)
            training = try trainingConfig()
            if TrainingCheckpoint.exists(run: run) {
                throw QSTError("\(run) already holds a run; use --resume \(run) or another -o", kind: .outputExists)
            }
        }
        if resume == nil, head == .classify {
            let k = try classifyLabels(task: args.task)
            weights = try ClassificationHead.attach(
                to: weights, numLabels: k, seed: training.seed,
                labelRows: try headStart(task: args.task, backbone: backbone, tokenizer: tokenizer),
                pooling: headPool)
        }
        let useHead = weights.config.numLabels != nil
        if useHead, args.task == nil {
            throw QSTError.option("the classification head trains on a GLUE task: give --task")
        }
        let sideModel = try SideModel(weights: weights, backbone: backbone)
        var baseCache: BaseStateCache?
        if let dir = args.cacheBase {
            if weights.config.headPooling == .mean {
                throw QSTError.option(
                    "--cache-base keeps norm(h_N) at the last token only; a mean-pooled head (--head-pool mean) needs every position"
                )
            }
            // Ranks see different examples each epoch; one shared cache folder would need cross-rank locking.
            if let mpi = parallel.mpi, mpi.size > 1 {
                throw QSTError.option("--cache-base works in a single process only (this job has \(mpi.size) ranks)")
            }
            let identity = try BaseCacheIdentity.of(
                model: backbone, config: weights.config, maxLength: training.maxLength)
            let cache = try BaseStateCache(
                directory: dir, identity: identity, config: weights.config,
                sideOrigin: resume ?? side ?? "side network")
            sideModel.frozenStateProvider = cache
            baseCache = cache
            note("base-state cache \(dir): \(cache.storedExamples) examples stored (\(Units.bytes(cache.storedBytes)))")
        }
        let estimate = TrainingMemoryEstimate(
            config: weights.config, parameterCount: weights.parameterCount,
            batch: training.batchSize, seqLen: training.maxLength,
            backboneBytes: backbone.source.weightBytes)
        let notes =
            ["memory estimate at batch \(training.batchSize) × \(training.maxLength):"]
            + estimate.rows.map { "  " + $0.0.padding(toLength: 26, withPad: " ", startingAt: 0) + Units.bytes($0.1) }
        return PreparedModel(
            model: sideModel, training: training, resumed: resumed, classifies: useHead,
            estimatedMemory: estimate.total, notes: notes, baseCache: baseCache)
    }

    /// `--head-init label-words`: the LM head's rows of the task's label words (nil for `random`, or when the
    /// label words do not start with distinct tokens, noted).
    func headStart(task: String?, backbone: FrozenModel, tokenizer: any ExampleTokenizer) throws -> [Float]? {
        guard headInit == .labelWords, let task else { return nil }
        guard let tokens = try? GLUETask.named(task).labelTokens(tokenizer) else {
            note("--head-init label-words: the label words of \(task) do not start with distinct tokens; random head")
            return nil
        }
        return try ClassificationHead.labelWordRows(head: backbone.headRows(), tokens: tokens)
    }

    /// K for `--head classify`: `--num-labels`, else the task's class count.
    func classifyLabels(task: String?) throws -> Int {
        guard let task else { throw QSTError.option("--head classify needs --task (sst2, rte, mrpc or cola)") }
        let classes = try GLUETask.named(task).labelWords.count
        let k = numLabels ?? classes
        guard k == classes else {
            throw QSTError.option(
                "--num-labels \(k): task \(task) has \(classes) classes"
                    + (k == 1 ? " (regression, K = 1, needs a task with real-valued labels such as STS-B)" : ""))
        }
        return k
    }
}
