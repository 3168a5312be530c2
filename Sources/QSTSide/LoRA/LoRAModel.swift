import Foundation
import QSTEngine
import QSTFormat
import QSTNN

/// The frozen (NF4) base model with LoRA adapters on its projections, trained by backpropagation
/// through the whole base: embeddings → L decoder blocks (LoRA inside) → final RMSNorm → frozen LM head.
///
/// Memory per micro-batch: every layer's input `[n, d]`, plus either every layer's full activation tape
/// (attention probabilities included) or, with `gradientCheckpointing`, one tape that backward refills
/// by recomputing each layer's forward from its saved input (and saved dropout stream).
public final class LoRAModel {
    public let base: FrozenModel
    public let weights: LoRAWeights
    public let gradientCheckpointing: Bool
    public let shape: DecoderBlockShape
    let blocks: [LoRAFrozenBlock]
    let embedding: WeightTensor
    let finalNorm: FloatBuffer
    let invFreq: [Float]
    let context: MatmulContext
    private var cache: TrainBuffers?

    /// - matmulPath: arithmetic of the frozen projections' forward (backward always dequantizes to F32).
    public init(
        base: FrozenModel, weights: LoRAWeights, gradientCheckpointing: Bool = false,
        matmulPath: MatmulPath = .kernelsAuto
    ) throws {
        let c = base.config
        guard weights.layerCount == c.numHiddenLayers, weights.shape == base.blockShape else {
            throw QSTError(
                "\(base.source.origin): LoRA adapters were built for \(weights.layerCount) layers of "
                    + "\(weights.shape) but the base has \(c.numHiddenLayers) layers of \(base.blockShape)")
        }
        self.base = base; self.weights = weights; self.gradientCheckpointing = gradientCheckpointing
        shape = base.blockShape
        blocks = try (0..<c.numHiddenLayers).map { i in
            try LoRAFrozenBlock(
                try base.family.blockWeights(layer: i, config: c, source: base.source),
                origin: base.source.origin)
        }
        embedding = try base.source.tensor("model.embed_tokens.weight")
        try embedding.expectShape([c.vocabSize, c.hiddenSize], origin: base.source.origin)
        let norm = try base.source.tensor("model.norm.weight")
        try norm.expectShape([c.hiddenSize], origin: base.source.origin)
        finalNorm = norm.floats()
        invFreq = RoPE.inverseFrequencies(
            headDim: c.resolvedHeadDim, theta: c.theta,
            scaling: try c.ropeScalingValue(origin: base.source.origin))
        context = MatmulContext(path: matmulPath)
        // Training takes the row-independent loops, as QST's training forward does: a sequence gets the same
        // bits whatever else is in its micro-batch, so data-parallel slices (MPI ranks) reproduce one process
        // (the AUTO loop shape depends on the row count: GEMV up to a measured row count, then GEMM).
        context.rowIndependent = true
    }

    /// A base model with fresh PEFT-initialised adapters.
    public static func fresh(
        base: FrozenModel, config: LoRAConfig, gradientCheckpointing: Bool = false,
        matmulPath: MatmulPath = .kernelsAuto
    ) throws -> LoRAModel {
        let w = try LoRAWeights(config: config, layerCount: base.config.numHiddenLayers, shape: base.blockShape)
        w.initialize(seed: config.seed)
        return try LoRAModel(
            base: base, weights: w, gradientCheckpointing: gradientCheckpointing, matmulPath: matmulPath)
    }

    var layerCount: Int { blocks.count }

    /// Buffers reused across steps (grown when a batch is larger), so pages are not faulted in every step.
    final class TrainBuffers {
        let rows: Int, probsCount: Int
        let inputs: [FloatBuffer]  // x_0 … x_L
        let tapes: [LoRABlockTape]  // L, or 1 with checkpointing
        let grad: LoRABlockGradScratch
        let branch: LoRABranch.Scratch
        let finalNormed, finalRstd, dA, dB: FloatBuffer
        init(rows n: Int, probsCount: Int, model m: LoRAModel) {
            rows = n; self.probsCount = probsCount
            let d = m.shape.hidden, L = m.layerCount
            inputs = (0...L).map { _ in FloatBuffer(count: n * d) }
            tapes = (0..<(m.gradientCheckpointing ? 1 : L)).map { _ in
                LoRABlockTape(rows: n, shape: m.shape, probsCount: probsCount, lora: m.weights.config)
            }
            grad = LoRABlockGradScratch(rows: n, shape: m.shape, r: m.weights.config.r)
            branch = grad.branch
            finalNormed = FloatBuffer(count: n * d); finalRstd = FloatBuffer(count: n)
            dA = FloatBuffer(count: n * d); dB = FloatBuffer(count: n * d)
        }
    }

    private func buffers(rows n: Int, probsCount p: Int) -> TrainBuffers {
        if let c = cache, c.rows >= n, c.probsCount >= p { return c }
        let keepProbs = max(p, cache?.probsCount ?? 0), keepRows = max(n, cache?.rows ?? 0)
        cache = nil  // release the old tapes before allocating larger ones
        let fresh = TrainBuffers(rows: keepRows, probsCount: keepProbs, model: self)
        cache = fresh
        return fresh
    }

    /// Embeds `tokens` into `out [n, d]` (padding positions hold token 0's row; they are masked out).
    func embed(_ tokens: TokenBatch, into out: UnsafeMutablePointer<Float>) throws {
        let d = shape.hidden, V = base.config.vocabSize
        for (r, id) in tokens.ids.enumerated() {
            guard id >= 0, Int(id) < V else {
                throw QSTError("LoRA forward: token id \(id) at position \(r) is outside the vocabulary 0..<\(V)")
            }
            embedding.decode(start: Int(id) * d, count: d, into: out + r * d)
        }
    }

    /// One training micro-batch: forward keeping what backward needs, chunked cross-entropy through the
    /// frozen head, backward through every block. LoRA gradients are ADDED to `weights.grads`, scaled by
    /// `gradScale` (default 1/labelled count). Dropout draws come from `rng`.
    public func trainStep(_ batch: SideBatch, rng: inout SplitMix64, gradScale: Float? = nil) throws
        -> ChunkedCrossEntropy.Result
    {
        let tokens = batch.tokens, n = tokens.ids.count, d = shape.hidden, L = layerCount
        try checkWindow(seqLen: tokens.seqLen)
        let g = LoRAGeometry(lengths: tokens.lengths, seqLen: tokens.seqLen, block: shape, invFreq: invFreq)
        let B = buffers(rows: n, probsCount: g.shape.probsCount)
        try embed(tokens, into: B.inputs[0].pointer)
        var stream: SplitMix64? = rng
        var layerRNG: [SplitMix64?] = []
        let streams = batch.dropoutKeys.map { DropoutStreams(keys: $0, seqLen: tokens.seqLen) }
        for i in 0..<L {
            layerRNG.append(stream)
            let tape = B.tapes[gradientCheckpointing ? 0 : i]
            LoRABlock.forward(
                layer: i, frozen: blocks[i], lora: weights, shape: shape, x: B.inputs[i].constPointer,
                out: B.inputs[i + 1].pointer, geometry: g, tape: tape, scratch: B.branch, rng: &stream,
                context: context, streams: streams)
        }
        rng = stream ?? rng
        RMSNorm.forward(
            out: B.finalNormed.pointer, rstd: B.finalRstd.pointer, x: B.inputs[L].pointer,
            weight: finalNorm.pointer, n: n, d: d, eps: shape.eps)
        let dO = B.dB
        dO.zero()
        let result: ChunkedCrossEntropy.Result
        do {
            result = try batch.labels.withUnsafeBufferPointer { lp in
                try ChunkedCrossEntropy.lossAndGradient(
                    hidden: B.finalNormed.pointer, labels: lp.baseAddress!, n: n,
                    head: base.headRows(), dHidden: dO.pointer, gradScale: gradScale)
            }
        }
        guard result.count > 0 else { return result }
        var dh = B.dA, dPrev = B.dB
        dh.zero()
        RMSNorm.backward(
            dx: dh.pointer, dweight: nil, dout: dO.pointer, x: B.inputs[L].pointer, weight: finalNorm.pointer,
            rstd: B.finalRstd.pointer, n: n, d: d)
        // dO aliases dPrev; it is no longer needed once dh holds the final norm's input gradient.
        for i in stride(from: L - 1, through: 0, by: -1) {
            let tape = B.tapes[gradientCheckpointing ? 0 : i]
            if gradientCheckpointing, i != L - 1 {
                // Recompute the layer from its saved input with the same dropout stream.
                var replay = layerRNG[i]
                LoRABlock.forward(
                    layer: i, frozen: blocks[i], lora: weights, shape: shape, x: B.inputs[i].constPointer,
                    out: B.grad.dAct.pointer, geometry: g, tape: tape, scratch: B.branch, rng: &replay,
                    context: context, streams: streams)
            }
            LoRABlock.backward(
                layer: i, frozen: blocks[i], lora: weights, shape: shape, x: B.inputs[i].constPointer,
                dout: dh.constPointer, dx: dPrev.pointer, geometry: g, tape: tape, grad: B.grad)
            swap(&dh, &dPrev)
        }
        return result
    }

    /// Forward without dropout or kept tapes: the final-normed hidden states `[n, d]` the head consumes.
    /// LoRA's own block forward and backward attend with the full causal mask: a sequence longer than the
    /// base's sliding window (Mistral) would be computed differently from the engine, so it is refused.
    func checkWindow(seqLen: Int) throws {
        if let w = base.config.attentionWindow, seqLen > w {
            throw QSTError(
                "LoRA: a sequence of \(seqLen) tokens is longer than the base's sliding_window \(w), which LoRA "
                    + "training does not apply; use --max-length \(w) or less")
        }
    }

    public func outputHidden(_ tokens: TokenBatch) throws -> FloatBuffer {
        let n = tokens.ids.count, d = shape.hidden
        try checkWindow(seqLen: tokens.seqLen)
        let g = LoRAGeometry(lengths: tokens.lengths, seqLen: tokens.seqLen, block: shape, invFreq: invFreq)
        let tape = LoRABlockTape(rows: n, shape: shape, probsCount: g.shape.probsCount, lora: weights.config)
        let scratch = LoRABranch.Scratch(
            rows: n, maxIn: max(shape.hidden, shape.intermediate, shape.qDim), r: weights.config.r)
        var x = FloatBuffer(count: n * d), y = FloatBuffer(count: n * d)
        try embed(tokens, into: x.pointer)
        var none: SplitMix64? = nil
        for i in 0..<layerCount {
            LoRABlock.forward(
                layer: i, frozen: blocks[i], lora: weights, shape: shape, x: x.constPointer, out: y.pointer,
                geometry: g, tape: tape, scratch: scratch, rng: &none, context: context)
            swap(&x, &y)
        }
        RMSNorm.forward(out: y.pointer, rstd: nil, x: x.pointer, weight: finalNorm.pointer, n: n, d: d, eps: shape.eps)
        return y
    }

    /// An adapter folder (`adapter_config.json`, `adapter_model.safetensors`) on `base`, for evaluation.
    public static func load(adapter directory: String, base: FrozenModel) throws -> LoRAModel {
        try LoRAModel(
            base: base,
            weights: try LoRAAdapterIO.load(
                directory: directory, layerCount: base.config.numHiddenLayers, shape: base.blockShape))
    }

    /// The head input (final-normed hidden state) of the last token of one prompt. LoRA has no decoding
    /// cache: every call runs the whole prompt through the training forward (no dropout).
    public func lastHeadInput(_ ids: [Int32]) throws -> [Float] {
        guard !ids.isEmpty else { throw QSTError("LoRA: an empty prompt has no last token") }
        let h = try outputHidden(TokenBatch(ids: ids, lengths: [ids.count], seqLen: ids.count))
        let d = shape.hidden
        return Array(UnsafeBufferPointer(start: h.constPointer + (ids.count - 1) * d, count: d))
    }

    /// Evaluation loss (no gradient) at the labelled positions.
    public func evaluationLoss(_ batch: SideBatch) throws -> ChunkedCrossEntropy.Result {
        let o = try outputHidden(batch.tokens)
        do {
            return try batch.labels.withUnsafeBufferPointer { lp in
                try ChunkedCrossEntropy.lossAndGradient(
                    hidden: o.pointer, labels: lp.baseAddress!, n: batch.labels.count,
                    head: base.headRows(), dHidden: nil)
            }
        }
    }

    /// Bytes the training buffers take for a `batch × seqLen` micro-batch (activations only).
    public func activationBytes(batch: Int, seqLen: Int) -> Int {
        let n = batch * seqLen, L = layerCount, d = shape.hidden
        let probs = batch * shape.heads * seqLen * seqLen
        let tape = LoRABlockTape.bytes(rows: n, shape: shape, probsCount: probs, lora: weights.config)
        return 4 * (L + 1) * n * d + (gradientCheckpointing ? 1 : L) * tape
    }
}
