import Foundation
import QSTEngine
import QSTFormat
import QSTNN

/// How the side network reads each frozen hidden state `h_i [n, d]` into its width `d/r`.
public enum DownsampleKind: String, Codable, CaseIterable, Sendable {
    /// The reference's `AdapterLinear`: dropout, linear d→h (no bias), activation, linear h→d/r (no bias),
    /// LayerNorm(d/r) with affine weight and bias.
    case adapter
    /// One linear map d→d/r without bias (after dropout).
    case linear
    /// Mean over each group of `r` consecutive features (nothing to train).
    case avgpool
    /// Maximum over each group of `r` consecutive features (nothing to train).
    case maxpool

    public var isTrainable: Bool { self == .adapter || self == .linear }
}

/// How the head input `o` combines the side network's `up(norm_side(s))` with the base's `norm(h_L)`
/// (Formats/SIDE.md §2). Files without the `headMix` key are `gated` (version 1, the reference's).
public enum HeadMix: String, Codable, CaseIterable, Sendable {
    /// The reference's `o = (1 − σ(z_head))·up + σ(z_head)·norm(h_L)`.
    case gated
    /// `o = norm(h_L) + (1 − σ(z_head))·up`: with `up` zero-initialised, `o` is exactly `norm(h_L)`, so the
    /// tuned model starts as the base model (`qst-init-side --init base`).
    case residual
}

/// Where a new side network starts (`qst-init-side --init`).
public enum SideInitialisation: String, CaseIterable, Sendable {
    /// The reference's initialisation (random `upsample`, `lm_head_z` = 1, gated head mix).
    case reference
    /// The tuned model equals the base model at step 0: residual head mix, zero `upsample` weight and bias.
    case base
    /// As `base`, and the side blocks start as the base's own layers pruned to the side width (Ladder
    /// Side-Tuning's initialisation; `PrunedBaseInit`, Formats/SIDE.md §2.1).
    case basePruned = "base-pruned"

    public var headMix: HeadMix { self == .reference ? .gated : .residual }
    /// The downsampler when none is asked for: `linear` for `base-pruned`, the one that can start as the
    /// projection onto the kept channels; the reference's `adapter` otherwise.
    public var defaultDownsample: DownsampleKind { self == .basePruned ? .linear : .adapter }
}

/// Activation inside the adapter downsampler (`swish` is the reference default).
public enum SideActivation: String, Codable, CaseIterable, Sendable {
    case swish, gelu, relu
    public var op: Activation {
        switch self {
        case .swish: return .silu
        case .gelu: return .gelu
        case .relu: return .relu
        }
    }
}

/// What the side network needs to know about the frozen base model (from its config.json).
public struct BaseShape: Codable, Sendable, Equatable {
    public var hiddenSize: Int
    public var layerCount: Int
    public var attentionHeads: Int
    public var keyValueHeads: Int
    public var intermediateSize: Int
    public var vocabSize: Int
    public var rmsNormEps: Double
    public var ropeTheta: Double
    /// Hidden activation of the base MLP (the side blocks reuse it, as the reference copies the config).
    public var hiddenAct: String
    /// OPT bases only (absent for the LLaMA family, so LLaMA side configs are unchanged): see OPTSideShape.swift.
    public var modelFamily: String?
    public var layerNormBefore: Bool?
    public var headInputSize: Int?
    public var bias: Bool?
    public var affineNorms: Bool?

    public init(
        hiddenSize: Int, layerCount: Int, attentionHeads: Int, keyValueHeads: Int, intermediateSize: Int,
        vocabSize: Int, rmsNormEps: Double, ropeTheta: Double = 10000, hiddenAct: String = "silu",
        modelFamily: String? = nil, layerNormBefore: Bool? = nil, headInputSize: Int? = nil, bias: Bool? = nil,
        affineNorms: Bool? = nil
    ) {
        self.hiddenSize = hiddenSize; self.layerCount = layerCount; self.attentionHeads = attentionHeads
        self.keyValueHeads = keyValueHeads; self.intermediateSize = intermediateSize; self.vocabSize = vocabSize
        self.rmsNormEps = rmsNormEps; self.ropeTheta = ropeTheta; self.hiddenAct = hiddenAct
        self.modelFamily = modelFamily; self.layerNormBefore = layerNormBefore; self.headInputSize = headInputSize
        self.bias = bias; self.affineNorms = affineNorms
    }

    /// Reads a Hugging Face config.json with the engine's reader (`ModelConfig`: the same fields, defaults
    /// and validation as the frozen model that will run under this side network). `context` names the file
    /// in errors.
    public static func parse(configJSON data: Data, context: String) throws -> BaseShape {
        BaseShape(try ModelConfig.parse(data, origin: context))
    }

    /// The side network's view of a base model's config (LLaMA family; OPT in OPTSideShape.swift).
    public init(_ config: ModelConfig) {
        if config.isOPT { self.init(opt: config); return }
        self.init(
            hiddenSize: config.hiddenSize, layerCount: config.numHiddenLayers,
            attentionHeads: config.numAttentionHeads, keyValueHeads: config.kvHeads,
            intermediateSize: config.intermediateSize, vocabSize: config.vocabSize,
            rmsNormEps: config.rmsNormEps ?? ModelConfig.defaultRMSNormEps, ropeTheta: config.theta,
            hiddenAct: config.hiddenAct ?? "silu")
    }
}

/// The side network's hyper-parameters (serialised as side_config.json and into the safetensors metadata).
public struct SideConfig: Codable, Sendable, Equatable {
    public var base: BaseShape
    /// Reduction factor: the side network is `d/r` wide.
    public var r: Int
    public var downsample: DownsampleKind
    /// Bottleneck width of the adapter downsampler (the reference's `peft_hidden_size`).
    public var adapterHidden: Int
    public var activation: SideActivation
    /// Dropout on the downsampler input during training (adapter and linear only).
    public var dropout: Float
    public var seed: UInt64
    /// Sequence classification head (`score.weight [K, d]`, `score.bias [K]`) over the mixed output at each
    /// sequence's last token; nil = language-model head only. K = 1 is regression (Formats/SIDE.md §10).
    public var numLabels: Int?
    /// The head mix; nil (absent from the JSON, every file written before it existed) is `gated`.
    public var headMix: HeadMix?
    /// Which rows of `o` the classification head reads (Formats/SIDE.md §10); nil (absent) is `last`.
    public var headPooling: HeadPooling?

    public init(
        base: BaseShape, r: Int = 16, downsample: DownsampleKind = .adapter, adapterHidden: Int = 16,
        activation: SideActivation = .swish, dropout: Float = 0.1, seed: UInt64 = 0, numLabels: Int? = nil,
        headMix: HeadMix? = nil
    ) {
        self.base = base; self.r = r; self.downsample = downsample; self.adapterHidden = adapterHidden
        self.activation = activation; self.dropout = dropout; self.seed = seed; self.numLabels = numLabels
        self.headMix = headMix == .gated ? nil : headMix
    }

    /// The head mix in force (`gated` when the file does not say).
    public var mix: HeadMix { headMix ?? .gated }

    /// `upsample` starts random (reference) or at zero (residual mix: the tuned model is the base at step 0).
    var upsampleInit: SideInit { mix == .residual ? .zeros : .uniformFanIn }
    /// `z_head` at the start: the reference's 1.0 (σ ≈ 0.73 on the base's state); 0 for the residual mix,
    /// where it only scales the side's contribution by 1 − σ(0) = ½ (the gate's steepest point).
    var headGateInit: Float { mix == .residual ? 0 : 1 }

    public var width: Int { base.hiddenSize / r }
    public var intermediate: Int { base.intermediateSize / r }
    public var heads: Int { base.attentionHeads }
    public var kvHeads: Int { base.keyValueHeads }
    public var headDim: Int { width / base.attentionHeads }
    public var blockActivation: Activation { Activation(huggingFaceName: base.hiddenAct) ?? .silu }

    /// Reduction factors that give a whole head size, even when RoPE rotates pairs (not for OPT).
    public static func validReductions(hiddenSize d: Int, heads: Int, even: Bool = true) -> [Int] {
        (1...max(1, d)).filter { r in
            d % r == 0 && (d / r) % heads == 0 && (!even || ((d / r) / heads) % 2 == 0)
        }
    }

    /// The widest side network `qst-init-side` builds by default.
    public static let defaultWidthLimit = 128

    /// The default reduction factor for a base: the valid r whose side width is the largest at most
    /// `defaultWidthLimit` (SmolLM2-135M, d 576: r 8 → 72, where r 16 → 36 trains worse; d 4096: r 32 → 128);
    /// when every valid width is wider, the narrowest.
    public static func defaultReduction(for base: BaseShape) -> Int {
        let valid = validReductions(
            hiddenSize: base.hiddenSize, heads: base.attentionHeads, even: base.family.needsEvenHeadSize)
        return valid.first { base.hiddenSize / $0 <= defaultWidthLimit } ?? valid.last ?? 1
    }

    /// Throws a one-line error for any combination the side network cannot be built with.
    public func validate() throws {
        // A configuration can come from a downloaded file: bound every size before any arithmetic with it.
        let limits: [(String, Int, Int)] = [
            ("hidden_size", base.hiddenSize, 1 << 20), ("num_hidden_layers", base.layerCount, 1 << 12),
            ("num_attention_heads", base.attentionHeads, 1 << 12),
            ("num_key_value_heads", base.keyValueHeads, 1 << 12),
            ("intermediate_size", base.intermediateSize, 1 << 22), ("vocab_size", base.vocabSize, 1 << 24),
            ("r", r, 1 << 20),
        ]
        for (name, value, limit) in limits where value < 1 || value > limit {
            throw QSTError("side network: \(name) \(value) is outside 1...\(limit)")
        }
        guard base.attentionHeads % base.keyValueHeads == 0 else {
            throw QSTError(
                "side network: num_key_value_heads \(base.keyValueHeads) does not divide num_attention_heads \(base.attentionHeads)"
            )
        }
        let d = base.hiddenSize, h = base.attentionHeads, even = base.family.needsEvenHeadSize
        guard r >= 1, d % r == 0, (d / r) % h == 0, !even || ((d / r) / h) % 2 == 0 else {
            let valid = SideConfig.validReductions(hiddenSize: d, heads: h, even: even).map(String.init).joined(
                separator: ", ")
            throw QSTError(
                "side network: r=\(r) does not give a whole\(even ? ", even" : "") head size (hidden \(d) / r must be a "
                    + "multiple of \(even ? "2·" : "")\(h) heads); valid r: \(valid)")
        }
        guard base.intermediateSize / r >= 1 else {
            throw QSTError("side network: intermediate size \(base.intermediateSize) / r=\(r) is zero")
        }
        guard adapterHidden <= 1 << 20 else {
            throw QSTError("side network: adapter_hidden \(adapterHidden) is above \(1 << 20)")
        }
        guard downsample != .adapter || adapterHidden >= 1 else {
            throw QSTError("side network: --adapter-hidden must be at least 1 (got \(adapterHidden))")
        }
        guard dropout >= 0, dropout < 1 else {
            throw QSTError("side network: dropout must be in [0, 1) (got \(dropout))")
        }
        if let k = numLabels, k < 1 || k > 1 << 16 {
            throw QSTError("side network: num_labels \(k) is outside 1...65536")
        }
        if headPooling != nil, numLabels == nil {
            throw QSTError("side network: headPooling needs a classification head (numLabels)")
        }
        if numLabels != nil, !base.family.supportsClassificationHead {
            throw QSTError("side network: the classification head is implemented for LLaMA-family bases only, not OPT")
        }
    }

    public func jsonData() throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try e.encode(self)
    }

    public static func decode(_ data: Data, context: String) throws -> SideConfig {
        do { return try JSONDecoder().decode(SideConfig.self, from: data) } catch {
            throw QSTError.file(context, "not a side network configuration: \(error)")
        }
    }
}
