import Foundation
import QSTFormat
import QSTNN

/// A Hugging Face `config.json` for the LLaMA family (`llama` — Llama 2/3, SmolLM —, `mistral`, `qwen2`)
/// and OPT (`opt`: its own fields below; `ffn_dim` is read as `intermediate_size`, see OPTConfig.swift).
/// Only fields that change the forward pass are read; `validate` rejects values the engine cannot honour,
/// naming the field, instead of silently computing something else.
public struct ModelConfig: Codable, Sendable, Equatable {
    public static let supportedModelTypes = ["llama", "mistral", "qwen2", "opt"]

    public var modelType: String
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var numKeyValueHeads: Int?
    public var headDim: Int?
    public var vocabSize: Int
    public var maxPositionEmbeddings: Int?
    public var rmsNormEps: Double?
    public var ropeTheta: Double?
    public var ropeScaling: RopeScalingConfig?
    public var hiddenAct: String?
    public var tieWordEmbeddings: Bool?
    public var attentionBias: Bool?
    public var mlpBias: Bool?
    public var slidingWindow: Int?
    public var useSlidingWindow: Bool?
    public var bosTokenId: TokenIDList?
    public var eosTokenId: TokenIDList?
    public var padTokenId: TokenIDList?
    // OPT only (OPTConfig).
    public var wordEmbedProjDim: Int?
    public var doLayerNormBefore: Bool?
    public var activationFunction: String?
    public var enableBias: Bool?
    public var layerNormElementwiseAffine: Bool?
    public var removeFinalLayerNorm: Bool?

    enum CodingKeys: String, CodingKey {
        case modelType = "model_type", hiddenSize = "hidden_size", intermediateSize = "intermediate_size"
        case numHiddenLayers = "num_hidden_layers", numAttentionHeads = "num_attention_heads"
        case numKeyValueHeads = "num_key_value_heads", headDim = "head_dim", vocabSize = "vocab_size"
        case maxPositionEmbeddings = "max_position_embeddings", rmsNormEps = "rms_norm_eps"
        case ropeTheta = "rope_theta", ropeScaling = "rope_scaling", hiddenAct = "hidden_act"
        case tieWordEmbeddings = "tie_word_embeddings", attentionBias = "attention_bias", mlpBias = "mlp_bias"
        case slidingWindow = "sliding_window", useSlidingWindow = "use_sliding_window"
        case bosTokenId = "bos_token_id", eosTokenId = "eos_token_id", padTokenId = "pad_token_id"
        case wordEmbedProjDim = "word_embed_proj_dim", doLayerNormBefore = "do_layer_norm_before"
        case activationFunction = "activation_function", enableBias = "enable_bias"
        case layerNormElementwiseAffine = "layer_norm_elementwise_affine", removeFinalLayerNorm =
            "_remove_final_layer_norm"
    }

    /// Parses and validates; `origin` names the file in error messages.
    public static func parse(_ data: Data, origin: String) throws -> ModelConfig {
        let config: ModelConfig
        do {
            config = try JSONDecoder().decode(ModelConfig.self, from: try OPTConfigKeys.normalized(data))
        } catch let DecodingError.keyNotFound(key, _) {
            throw QSTError.file(origin, "config.json: missing field '\(key.stringValue)'")
        } catch let DecodingError.typeMismatch(_, ctx) {
            throw QSTError.file(
                origin,
                "config.json: field '\(ctx.codingPath.map(\.stringValue).joined(separator: "."))' has the wrong type")
        } catch let DecodingError.dataCorrupted(ctx) {
            let at = ctx.codingPath.map(\.stringValue).joined(separator: ".")
            throw QSTError.file(
                origin,
                "config.json: " + (at.isEmpty ? "not valid JSON" : "bad value for '\(at)': \(ctx.debugDescription)"))
        } catch {
            throw QSTError.file(origin, "config.json: \(error)")
        }
        try config.validate(origin: origin)
        return config
    }

    // Derived values with Hugging Face's defaults.
    public var kvHeads: Int { numKeyValueHeads ?? numAttentionHeads }
    public var resolvedHeadDim: Int { headDim ?? hiddenSize / numAttentionHeads }
    public var eps: Float { Float(rmsNormEps ?? Self.defaultRMSNormEps) }
    /// `rms_norm_eps` when config.json leaves it out: Hugging Face's `LlamaConfig` default (MistralConfig and
    /// Qwen2Config default to the same 1e-6). The side network reads its base's epsilon through this too.
    public static let defaultRMSNormEps = 1e-6
    public var theta: Double { ropeTheta ?? 10000 }
    public var eosTokenIDs: [Int] { eosTokenId?.ids ?? [] }
    public var bosTokenID: Int? { bosTokenId?.ids.first }
    public var qDim: Int { numAttentionHeads * resolvedHeadDim }
    public var kvDim: Int { kvHeads * resolvedHeadDim }

    /// The RoPE scaling as QSTNN understands it.
    public func ropeScalingValue(origin: String = "config.json") throws -> RoPEScaling {
        guard let rs = ropeScaling else { return .none }
        switch rs.kind {
        case nil, "default":
            return .none
        case "linear":
            guard let f = rs.factor, f > 0 else {
                throw QSTError.file(origin, "config.json: rope_scaling linear needs a positive 'factor'")
            }
            return .linear(factor: f)
        case "llama3":
            guard let f = rs.factor, let lo = rs.lowFreqFactor, let hi = rs.highFreqFactor,
                let orig = rs.originalMaxPositionEmbeddings, f > 0, hi > lo, orig > 0
            else {
                throw QSTError.file(
                    origin,
                    "config.json: rope_scaling llama3 needs factor, low_freq_factor < high_freq_factor and original_max_position_embeddings"
                )
            }
            return .llama3(factor: f, lowFreqFactor: lo, highFreqFactor: hi, originalMaxPositionEmbeddings: orig)
        case let other?:
            throw QSTError.file(origin, "config.json: rope_scaling type '\(other)' is not supported (linear, llama3)")
        }
    }

    public func validate(origin: String) throws {
        func bad(_ field: String, _ why: String) -> QSTError { QSTError.file(origin, "config.json: \(field) \(why)") }
        guard Self.supportedModelTypes.contains(modelType) else {
            throw bad(
                "model_type",
                "'\(modelType)' is not supported (supported: \(Self.supportedModelTypes.joined(separator: ", ")))")
        }
        for (name, v) in [
            ("hidden_size", hiddenSize), ("intermediate_size", intermediateSize),
            ("num_hidden_layers", numHiddenLayers), ("num_attention_heads", numAttentionHeads),
            ("vocab_size", vocabSize), ("num_key_value_heads", kvHeads), ("head_dim", resolvedHeadDim),
        ] where v <= 0 {
            throw bad(name, "must be positive (got \(v))")
        }
        if modelType == "opt" { try validateOPT(origin: origin); return }
        guard numAttentionHeads % kvHeads == 0 else {
            throw bad("num_key_value_heads", "\(kvHeads) does not divide num_attention_heads \(numAttentionHeads)")
        }
        guard resolvedHeadDim % 2 == 0 else { throw bad("head_dim", "\(resolvedHeadDim) must be even for RoPE") }
        if let act = hiddenAct, act != "silu", act != "swish" {
            throw bad("hidden_act", "'\(act)' is not supported (the LLaMA MLP uses silu)")
        }
        if modelType == "qwen2", useSlidingWindow == true {
            // Qwen2 windows only the layers from max_window_layers on, each with its own cache shape.
            throw bad(
                "use_sliding_window",
                "true is not supported (Qwen2's per-layer sliding window, max_window_layers); "
                    + "only Mistral's sliding_window is")
        }
        if modelType == "mistral", let w = slidingWindow, w <= 0 {
            throw bad("sliding_window", "must be positive (got \(w))")
        }
        if let e = rmsNormEps, !(e > 0) { throw bad("rms_norm_eps", "must be positive") }
        if let t = ropeTheta, !(t > 0) { throw bad("rope_theta", "must be positive") }
        _ = try ropeScalingValue(origin: origin)
    }

    /// The attention window: Mistral's `sliding_window` (the query at row p sees rows p − window < j ≤ p);
    /// nil for every other model type and for Mistral configs that set it to null.
    public var attentionWindow: Int? { modelType == "mistral" ? slidingWindow : nil }

    /// OPT has learned positions up to max_position_embeddings; longer sequences have no position.
    public func checkSequenceLength(_ length: Int) throws {
        if modelType == "opt", let m = maxPositionEmbeddings, length > m {
            throw QSTError("opt max_position_embeddings \(m): a sequence of \(length) tokens has no learned position")
        }
    }
}

/// `rope_scaling` as written in config.json (`type` in older files, `rope_type` in newer ones).
public struct RopeScalingConfig: Codable, Sendable, Equatable {
    public var type: String?
    public var ropeType: String?
    public var factor: Double?
    public var lowFreqFactor: Double?
    public var highFreqFactor: Double?
    public var originalMaxPositionEmbeddings: Int?

    enum CodingKeys: String, CodingKey {
        case type, ropeType = "rope_type", factor, lowFreqFactor = "low_freq_factor"
        case highFreqFactor = "high_freq_factor", originalMaxPositionEmbeddings = "original_max_position_embeddings"
    }

    public var kind: String? { ropeType ?? type }
}

/// A token id field that Hugging Face writes either as one integer or as a list (`eos_token_id`).
public struct TokenIDList: Codable, Sendable, Equatable {
    public var ids: [Int]
    public init(_ ids: [Int]) { self.ids = ids }
    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() {
            ids = []
        } else if let one = try? c.decode(Int.self) {
            ids = [one]
        } else {
            ids = try c.decode([Int].self)
        }
    }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        if ids.count == 1 { try c.encode(ids[0]) } else { try c.encode(ids) }
    }
}
