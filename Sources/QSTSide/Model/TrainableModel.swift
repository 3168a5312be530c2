import QSTEngine
import QSTFormat
import QSTNN

/// What the training loop, evaluation and checkpoints need from a model that trains beside or inside
/// a frozen base: the side network (QST) and LoRA adapters share one `Trainer` through it.
public protocol TrainableModel: AnyObject {
    /// The frozen model: its final hidden states (zero-shot evaluation) and its LM head.
    var frozenBackbone: any FrozenBackbone { get }
    var trainableParameters: [Parameter] { get }
    func zeroGradients()
    /// Forward, loss and backward for one micro-batch; gradients are added, scaled by `gradScale`.
    func trainStep(_ batch: SideBatch, rng: inout SplitMix64, gradScale: Float?) throws -> ChunkedCrossEntropy.Result
    /// The hidden state the frozen LM head reads, [batch·seqLen, hiddenSize].
    func outputHidden(_ tokens: TokenBatch) throws -> FloatBuffer
    /// The same for an evaluation batch, exact at its labelled rows (other rows may be anything finite): lets
    /// a side network read stored frozen states (`--cache-base`) instead of running the base.
    func evaluationHidden(_ batch: SideBatch) throws -> FloatBuffer
    /// Saves the trainable weights in the model's own exchange format (best/, final/).
    func saveWeights(directory: String, extraMetadata: [String: String]) throws
    /// Writes a resumable checkpoint of the run (Formats/RUNS.md §4).
    func saveCheckpoint(run: String, optimizer: AdamW, state: TrainerState, training: TrainingConfig) throws
    /// K of the model's classification head (ClassificationHead.swift), nil when it predicts with the LM head.
    var classifierLabels: Int? { get }
    /// The head's outputs `[rows.count, K]` at the given rows of `outputHidden`.
    func classifierLogits(hidden: FloatBuffer, rows: [Int]) throws -> [Float]
}

extension TrainableModel {
    public var classifierLabels: Int? { nil }
    public func evaluationHidden(_ batch: SideBatch) throws -> FloatBuffer { try outputHidden(batch.tokens) }
    public func classifierLogits(hidden: FloatBuffer, rows: [Int]) throws -> [Float] {
        throw QSTError("this model has no classification head")
    }
}

extension SideModel: TrainableModel {
    public var frozenBackbone: any FrozenBackbone { backbone }
    public var trainableParameters: [Parameter] { weights.parameters }
    public func zeroGradients() { weights.zeroGradients() }
    public func saveWeights(directory: String, extraMetadata: [String: String]) throws {
        try SideWeightsIO.save(weights, directory: directory, extraMetadata: extraMetadata)
    }
    public func saveCheckpoint(run: String, optimizer: AdamW, state: TrainerState, training: TrainingConfig) throws {
        try TrainingCheckpoint.save(run: run, weights: weights, optimizer: optimizer, state: state, training: training)
    }
}

extension LoRAModel: TrainableModel {
    public var frozenBackbone: any FrozenBackbone { base }
    public var trainableParameters: [Parameter] { weights.parameters }
    public func zeroGradients() { weights.zeroGradients() }
    public func saveWeights(directory: String, extraMetadata: [String: String]) throws {
        try LoRAAdapterIO.save(weights, directory: directory, extraMetadata: extraMetadata)
    }
    public func saveCheckpoint(run: String, optimizer: AdamW, state: TrainerState, training: TrainingConfig) throws {
        try LoRACheckpoint.save(run: run, weights: weights, optimizer: optimizer, state: state, training: training)
    }
}

/// The QST training loop over a side network.
public typealias SideTrainer = Trainer<SideModel>
/// The same loop over LoRA adapters (backprop through the base).
public typealias LoRATrainer = Trainer<LoRAModel>
