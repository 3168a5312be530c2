import Foundation
import QSTNN

/// What differs between the side networks of the two base families (LLaMA family and OPT): the blocks, the
/// final norm, the tensor names and layout, the export conventions. `BaseShape.family` picks one from the
/// base's config once; the training, layout, export and validation code asks it instead of branching.
protocol SideFamily: Sendable {
    /// For messages: "LLaMA-family", "OPT".
    var name: String { get }
    /// `name` after "a"/"an".
    var nameWithArticle: String { get }
    /// Where the reference keeps the side modules: `QSTLlamaForCausalLM` is `model.`, `QSTOPTDecoder` `model.decoder.`.
    var namePrefix: String { get }
    /// `tensor_names` of adapter_config.json: the reference class whose state dict the export follows.
    var referenceStateDict: String { get }
    /// RoPE rotates pairs, so a LLaMA side head needs an even size; OPT has no RoPE.
    var needsEvenHeadSize: Bool { get }
    /// The sequence-classification head is implemented for the LLaMA family only.
    var supportsClassificationHead: Bool { get }
    /// The reference's head mixes `σ(z)·up + (1 − σ(z))·h` (OPT) where ours is `(1 − σ(z))·up + σ(z)·h`, so
    /// the exported `lm_head_z` is the negated logit.
    var exportNegatesHeadGate: Bool { get }
    /// The block keeps a second residual sum (OPT's post-norm layers) in the workspace.
    var blockKeepsSecondResidual: Bool { get }
    /// The side stream's final norm before `upsample` (nil: none).
    func headNormName(_ base: BaseShape) -> String?
    /// The blocks, final norm, `upsample` and `lm_head_z` in the reference's state-dict order (after the
    /// downsamplers and gates).
    func layout(config: SideConfig, add: SideLayoutAdd)
    /// `out = block_i(x)`, leaving every intermediate in `ws`.
    func blockForward(
        layer: Int, weights: SideWeights, x: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>,
        geometry: SideBatchGeometry, ws: SideBlockWorkspace)
    /// `dx` (overwritten) and the block's weight gradients from `dout` and what `blockForward` left in `ws`.
    func blockBackward(
        layer: Int, weights: SideWeights, x: UnsafePointer<Float>, dout: UnsafePointer<Float>,
        dx: UnsafeMutablePointer<Float>, geometry: SideBatchGeometry, ws: SideBlockWorkspace)
    /// The final norm named `name`: `out [n, w] = norm(x)`; `mean` is written by a LayerNorm only.
    func headNormForward(
        weights: SideWeights, name: String, out: UnsafeMutablePointer<Float>,
        mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, n: Int)
    /// Accumulates `dx` and the final norm's weight gradients from `dout`.
    func headNormBackward(
        weights: SideWeights, name: String, dx: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
        x: UnsafePointer<Float>, mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, n: Int)
    /// Parameters of a base of this shape (embeddings, layers, final norm; an untied head is not counted).
    func baseParameterCount(_ shape: BaseShape) -> Int
    /// Layer `layer`'s block matrices that `SideInferenceWeights` packs for decoding, in the order
    /// `inferenceBlocks` reads them (empty: the family's decode blocks read `SideWeights` directly).
    func packedBlockMatrices(layer: Int) -> [String]
    /// The blocks for cached decoding (SideRunner), one per layer.
    func inferenceBlocks(pack: SideInferenceWeights) -> [any SideInferenceBlock]
    /// The final norm's parameters for decoding: weight and, for a LayerNorm, bias (`plain` is ones then zeros,
    /// for norms without parameters); nil when the side stream has no final norm.
    func inferenceHeadNorm(weights: SideWeights, plain: FloatBuffer)
        -> (weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?)?
}

/// Adds one tensor to a side network's layout: name, shape, initialisation, fan-in, constant, weight decay.
typealias SideLayoutAdd = (
    _ name: String, _ shape: [Int], _ init: SideInit, _ fanIn: Int, _ constant: Float,
    _ decay: Bool
) -> Void

extension BaseShape {
    /// The side network's family for this base.
    var family: any SideFamily { isOPT ? OPTSideFamily() : LlamaSideFamily() }
}

/// LLaMA-family bases (llama, mistral, qwen2): `SideBlock`, RMSNorm `model.norm_qst`.
struct LlamaSideFamily: SideFamily {
    var name: String { "LLaMA-family" }
    var nameWithArticle: String { "a LLaMA-family" }
    var namePrefix: String { "model." }
    var referenceStateDict: String { "QSTLlamaForCausalLM.state_dict" }
    var needsEvenHeadSize: Bool { true }
    var supportsClassificationHead: Bool { true }
    var exportNegatesHeadGate: Bool { false }
    var blockKeepsSecondResidual: Bool { false }
    func headNormName(_ base: BaseShape) -> String? { "model.norm_qst.weight" }

    func layout(config: SideConfig, add: SideLayoutAdd) { SideBlock.layout(config: config, add: add) }

    func blockForward(
        layer: Int, weights: SideWeights, x: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>,
        geometry: SideBatchGeometry, ws: SideBlockWorkspace
    ) {
        SideBlock.forward(layer: layer, weights: weights, x: x, out: out, geometry: geometry, ws: ws)
    }

    func blockBackward(
        layer: Int, weights: SideWeights, x: UnsafePointer<Float>, dout: UnsafePointer<Float>,
        dx: UnsafeMutablePointer<Float>, geometry: SideBatchGeometry, ws: SideBlockWorkspace
    ) {
        SideBlock.backward(layer: layer, weights: weights, x: x, dout: dout, dx: dx, geometry: geometry, ws: ws)
    }

    func headNormForward(
        weights W: SideWeights, name: String, out: UnsafeMutablePointer<Float>,
        mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, n: Int
    ) {
        RMSNorm.forward(
            out: out, rstd: rstd, x: x, weight: W.value(name), n: n, d: W.config.width,
            eps: Float(W.config.base.rmsNormEps))
    }

    func headNormBackward(
        weights W: SideWeights, name: String, dx: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
        x: UnsafePointer<Float>, mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, n: Int
    ) {
        RMSNorm.backward(
            dx: dx, dweight: W.grad(name), dout: dout, x: x, weight: W.value(name), rstd: rstd, n: n,
            d: W.config.width)
    }

    func baseParameterCount(_ s: BaseShape) -> Int {
        let d = s.hiddenSize, hd = d / s.attentionHeads, kv = s.keyValueHeads * hd
        let perLayer = d * d * 2 + 2 * d * kv + 3 * d * s.intermediateSize + 2 * d
        return s.vocabSize * d + s.layerCount * perLayer + d
    }

    func packedBlockMatrices(layer: Int) -> [String] {
        let n = SideBlock.Names(layer)
        return [n.q, n.k, n.v, n.o, n.gate, n.up, n.down]
    }

    func inferenceBlocks(pack: SideInferenceWeights) -> [any SideInferenceBlock] {
        pack.blocks.enumerated().map { SideRunner.Layer(weights: pack.weights, layer: $0.offset, matrices: $0.element) }
    }

    func inferenceHeadNorm(weights: SideWeights, plain: FloatBuffer)
        -> (weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?)?
    {
        guard let name = headNormName(weights.config.base) else { return nil }
        return (UnsafePointer(weights.value(name)), nil)
    }
}

/// OPT bases (Formats/SIDE.md §9): `OPTSideBlock`, LayerNorm `final_layer_norm_qst` on pre-norm bases only.
struct OPTSideFamily: SideFamily {
    var name: String { "OPT" }
    var nameWithArticle: String { "an OPT" }
    var namePrefix: String { "model.decoder." }
    var referenceStateDict: String { "QSTOPTForCausalLM.state_dict" }
    var needsEvenHeadSize: Bool { false }
    var supportsClassificationHead: Bool { false }
    var exportNegatesHeadGate: Bool { true }
    var blockKeepsSecondResidual: Bool { true }
    func headNormName(_ base: BaseShape) -> String? {
        base.optLayerNormBefore ? "model.decoder.final_layer_norm_qst" : nil
    }

    func layout(config: SideConfig, add: SideLayoutAdd) { OPTSideBlock.layout(config: config, add: add) }

    func blockForward(
        layer: Int, weights: SideWeights, x: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>,
        geometry: SideBatchGeometry, ws: SideBlockWorkspace
    ) {
        OPTSideBlock.forward(layer: layer, weights: weights, x: x, out: out, geometry: geometry, ws: ws)
    }

    func blockBackward(
        layer: Int, weights: SideWeights, x: UnsafePointer<Float>, dout: UnsafePointer<Float>,
        dx: UnsafeMutablePointer<Float>, geometry: SideBatchGeometry, ws: SideBlockWorkspace
    ) {
        OPTSideBlock.backward(layer: layer, weights: weights, x: x, dout: dout, dx: dx, geometry: geometry, ws: ws)
    }

    func headNormForward(
        weights W: SideWeights, name: String, out: UnsafeMutablePointer<Float>,
        mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, n: Int
    ) {
        OPTSideBlock.norm(W, name, out: out, mean: mean, rstd: rstd, x: x, n: n, d: W.config.width)
    }

    func headNormBackward(
        weights W: SideWeights, name: String, dx: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
        x: UnsafePointer<Float>, mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, n: Int
    ) {
        OPTSideBlock.normBackward(W, name, dx: dx, dout: dout, x: x, mean: mean, rstd: rstd, n: n, d: W.config.width)
    }

    func baseParameterCount(_ s: BaseShape) -> Int { SideSetup.optParameterCount(s) }

    func packedBlockMatrices(layer: Int) -> [String] { [] }

    func inferenceBlocks(pack: SideInferenceWeights) -> [any SideInferenceBlock] {
        (0..<pack.weights.config.base.layerCount).map { OPTSideInference.Layer(weights: pack.weights, layer: $0) }
    }

    func inferenceHeadNorm(weights: SideWeights, plain: FloatBuffer)
        -> (weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?)?
    {
        let base = weights.config.base
        guard let name = headNormName(base) else { return nil }
        guard base.optAffineNorms else { return (plain.constPointer, plain.constPointer + weights.config.width) }
        return (UnsafePointer(weights.value(name + ".weight")), UnsafePointer(weights.value(name + ".bias")))
    }
}
