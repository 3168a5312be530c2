import Foundation
import QSTFormat
import QSTNN

/// OPT's `config.json` (Hugging Face `OPTConfig`) read into `ModelConfig`: `ffn_dim` is the MLP width
/// (`intermediate_size` elsewhere); the other OPT fields have their own optional properties.
enum OPTConfigKeys {
    /// For `model_type: opt`, copies `ffn_dim` to `intermediate_size` so the shared decoder reads it;
    /// any other file is returned unchanged.
    static func normalized(_ data: Data) throws -> Data {
        guard let object = try? JSONSerialization.jsonObject(with: data), var dict = object as? [String: Any],
            dict["model_type"] as? String == "opt", dict["intermediate_size"] == nil, let ffn = dict["ffn_dim"]
        else {
            return data
        }
        dict["intermediate_size"] = ffn
        return try JSONSerialization.data(withJSONObject: dict)
    }
}

extension ModelConfig {
    /// HF OPT defaults (OPTConfig): LayerNorm before each sub-block, biases, affine norms, relu.
    public var isOPT: Bool { modelType == "opt" }
    public var optLayerNormBefore: Bool { doLayerNormBefore ?? true }
    public var optBias: Bool { enableBias ?? true }
    public var optAffineNorms: Bool { layerNormElementwiseAffine ?? true }
    /// The decoder's own final LayerNorm exists only with pre-norm layers (350m has none).
    public var optFinalNorm: Bool { optLayerNormBefore && removeFinalLayerNorm != true }
    /// Width of the token embeddings and of the LM head's input (`word_embed_proj_dim`, 512 for opt-350m);
    /// the hidden size for every other model.
    public var headInputSize: Int { isOPT ? (wordEmbedProjDim ?? hiddenSize) : hiddenSize }
    /// OPT's `activation_function`.
    public var optActivation: Activation { Activation(huggingFaceName: activationFunction ?? "relu") ?? .relu }

    func validateOPT(origin: String) throws {
        func bad(_ field: String, _ why: String) -> QSTError { QSTError.file(origin, "config.json: \(field) \(why)") }
        guard hiddenSize % numAttentionHeads == 0 else {
            throw bad("num_attention_heads", "\(numAttentionHeads) does not divide hidden_size \(hiddenSize)")
        }
        if let kv = numKeyValueHeads, kv != numAttentionHeads {
            throw bad(
                "num_key_value_heads", "\(kv) differs from num_attention_heads (OPT has no grouped-query attention)")
        }
        if let h = headDim, h != hiddenSize / numAttentionHeads {
            throw bad("head_dim", "\(h) is not hidden_size / num_attention_heads")
        }
        let act = activationFunction ?? "relu"
        guard act == "relu" || act == "gelu" else {
            throw bad("activation_function", "'\(act)' is not supported (relu, gelu)")
        }
        if let e = wordEmbedProjDim, e <= 0 { throw bad("word_embed_proj_dim", "must be positive (got \(e))") }
        guard let m = maxPositionEmbeddings, m > 0 else {
            throw bad("max_position_embeddings", "must be given and positive (OPT learns one embedding per position)")
        }
    }
}
