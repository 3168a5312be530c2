import Foundation

/// Model shapes for memory and speed benchmarks at scale (weights are random; quality is not the point).
struct SyntheticShape {
    var name: String
    var hidden: Int
    var layers: Int
    var heads: Int
    var kvHeads: Int
    var intermediate: Int
    var vocab: Int
    var ropeTheta: Double
    var tied: Bool

    static let all: [SyntheticShape] = [
        .init(
            name: "tiny", hidden: 256, layers: 4, heads: 8, kvHeads: 2, intermediate: 688, vocab: 512, ropeTheta: 10000,
            tied: true),
        .init(
            name: "smollm2-135m", hidden: 576, layers: 30, heads: 9, kvHeads: 3, intermediate: 1536, vocab: 49152,
            ropeTheta: 100000, tied: true),
        .init(
            name: "llama-2-7b", hidden: 4096, layers: 32, heads: 32, kvHeads: 32, intermediate: 11008, vocab: 32000,
            ropeTheta: 10000, tied: false),
        .init(
            name: "llama-2-13b", hidden: 5120, layers: 40, heads: 40, kvHeads: 40, intermediate: 13824, vocab: 32000,
            ropeTheta: 10000, tied: false),
        .init(
            name: "llama-2-70b", hidden: 8192, layers: 80, heads: 64, kvHeads: 8, intermediate: 28672, vocab: 32000,
            ropeTheta: 10000, tied: false),
        .init(
            name: "llama-3-8b", hidden: 4096, layers: 32, heads: 32, kvHeads: 8, intermediate: 14336, vocab: 128256,
            ropeTheta: 500000, tied: false),
    ]

    var headDim: Int { hidden / heads }

    /// A Hugging Face config.json for the shape.
    func configJSON() throws -> Data {
        let config: [String: Any] = [
            "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
            "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kvHeads,
            "intermediate_size": intermediate, "vocab_size": vocab, "rms_norm_eps": 1e-5, "rope_theta": ropeTheta,
            "max_position_embeddings": 4096, "tie_word_embeddings": tied, "hidden_act": "silu",
            "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "bfloat16",
            "qst_synthetic": "random weights for benchmarks: \(name)",
        ]
        return try JSONSerialization.data(withJSONObject: config, options: [.sortedKeys, .prettyPrinted])
    }

    /// (name, [out, in]) of every linear weight in layer `i`, in Hugging Face order.
    func layerMatrices(_ i: Int) -> [(String, [Int])] {
        let p = "model.layers.\(i)."
        let kv = kvHeads * headDim
        return [
            (p + "self_attn.q_proj.weight", [hidden, hidden]), (p + "self_attn.k_proj.weight", [kv, hidden]),
            (p + "self_attn.v_proj.weight", [kv, hidden]), (p + "self_attn.o_proj.weight", [hidden, hidden]),
            (p + "mlp.gate_proj.weight", [intermediate, hidden]), (p + "mlp.up_proj.weight", [intermediate, hidden]),
            (p + "mlp.down_proj.weight", [hidden, intermediate]),
        ]
    }

    var parameterCount: Int {
        let perLayer = layerMatrices(0).reduce(0) { $0 + $1.1[0] * $1.1[1] } + 2 * hidden
        return layers * perLayer + vocab * hidden * (tied ? 1 : 2) + hidden
    }
}
