import Foundation
import QSTEngine
import QSTFormat
import QSTNN

/// OPT bases (Formats/SIDE.md §9): what the side network reads from an `OPTConfig` and how its tensors are
/// named. The side blocks are OPT layers at width d/r (LayerNorm, biases, FFN of width ffn_dim/r with the
/// base's activation), as the reference `modeling_opt_qst.py` builds them.
extension BaseShape {
    public var isOPT: Bool { modelFamily == "opt" }
    /// Width of what the frozen LM head reads: OPT's word_embed_proj_dim, else the hidden size.
    public var headSize: Int { headInputSize ?? hiddenSize }
    public var optLayerNormBefore: Bool { layerNormBefore ?? true }
    public var optBias: Bool { bias ?? true }
    /// `layer_norm_elementwise_affine`: without it the side blocks' LayerNorms have no weight or bias either.
    public var optAffineNorms: Bool { affineNorms ?? true }

    /// An OPT base's shape. OPT's LayerNorms use PyTorch's default epsilon 1e-5; there is no RoPE, so the
    /// theta is a placeholder.
    init(opt config: ModelConfig) {
        self.init(
            hiddenSize: config.hiddenSize, layerCount: config.numHiddenLayers,
            attentionHeads: config.numAttentionHeads, keyValueHeads: config.numAttentionHeads,
            intermediateSize: config.intermediateSize, vocabSize: config.vocabSize,
            rmsNormEps: 1e-5, ropeTheta: 10000, hiddenAct: config.activationFunction ?? "relu",
            modelFamily: "opt", layerNormBefore: config.optLayerNormBefore, headInputSize: config.headInputSize,
            bias: config.optBias, affineNorms: config.optAffineNorms ? nil : false)
    }
}

extension SideConfig {
    /// Where the reference keeps the side modules: `QSTLlamaModel` is `model.`, `QSTOPTDecoder` is `model.decoder.`.
    public var namePrefix: String { base.family.namePrefix }
    public func downsamplePrefix(_ i: Int) -> String { namePrefix + "downsample.\(i)." }
    public func gateName(_ i: Int) -> String { namePrefix + "z.\(i)" }
    /// Width of the head mix (`upsample` output, `lm_head_z`).
    public var headSize: Int { base.headSize }
    /// The side stream's final norm: RMSNorm for LLaMA, LayerNorm `final_layer_norm_qst` for pre-norm OPT,
    /// none for post-norm OPT (350m), as in the reference.
    public var headNormName: String? { base.family.headNormName(base) }
}

/// Exported names are the reference's state dict. Values are the same except OPT's head gate: the reference
/// OPT head mixes `σ(z)·up + (1 − σ(z))·h` where every QST family uses `(1 − σ(z))·up + σ(z)·h`, so the
/// exported `lm_head_z` is the negated logit (σ(−z) = 1 − σ(z); exact in every float format).
public enum SideExportMapping {
    static let headGate = "lm_head_z"

    /// The exported values of tensor `name` (our convention → the reference's).
    static func exported(_ values: [Float], name: String, config: SideConfig) -> [Float] {
        config.base.family.exportNegatesHeadGate && name == headGate ? values.map { -$0 } : values
    }

    /// Converts weights just read from an exported file (the reference's convention) to ours, in place.
    static func importInPlace(_ weights: SideWeights) {
        guard weights.config.base.family.exportNegatesHeadGate, let s = weights.spec(headGate) else { return }
        let p = weights.values.pointer + s.offset
        for j in 0..<s.count { p[j] = -p[j] }
    }

    /// `tensor_names` of adapter_config.json.
    static func tensorNames(_ config: SideConfig) -> String {
        config.base.family.referenceStateDict
    }
}
