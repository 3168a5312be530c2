import QSTFormat
import QSTNN

/// A family of Hugging Face architectures that share the decoder block and differ in tensor names,
/// biases and defaults. Each family lives in its own file.
public protocol ModelFamily {
    static var modelTypes: [String] { get }
    /// Layer `layer`'s block, read from `source` (zero-copy where the storage allows).
    static func blockWeights(layer: Int, config: ModelConfig, source: WeightSource) throws -> DecoderBlockWeights
}

public enum ModelFamilies {
    public static var all: [any ModelFamily.Type] { [LlamaFamily.self, Qwen2Family.self, OPTFamily.self] }

    public static func family(for config: ModelConfig, origin: String) throws -> any ModelFamily.Type {
        guard let f = all.first(where: { $0.modelTypes.contains(config.modelType) }) else {
            throw QSTError.file(origin, "config.json: model_type '\(config.modelType)' is not supported")
        }
        return f
    }
}

/// Loading helpers shared by the families.
enum WeightLoading {
    /// A `[outF, inF]` linear with an optional `[outF]` bias (`name.weight`, `name.bias`).
    static func linear(_ source: WeightSource, _ name: String, out: Int, in inF: Int, bias: Bool) throws
        -> any LinearWeights
    {
        let t = try source.tensor(name + ".weight")
        try t.expectShape([out, inF], origin: source.origin)
        var b: FloatBuffer?
        if bias {
            let bt = try source.tensor(name + ".bias")
            try bt.expectShape([out], origin: source.origin)
            b = bt.floats()
        }
        if case .f32(let p) = t.storage {
            return DenseLinear(
                weight: p, bias: b?.constPointer, inFeatures: inF, outFeatures: out,
                owner: [t.owner, b].compactMap { $0 })
        }
        return QuantizedLinear(tensor: t, bias: b)
    }

    /// A `[count]` vector (norm weight) as owned F32.
    static func vector(_ source: WeightSource, _ name: String, count: Int) throws -> FloatBuffer {
        let t = try source.tensor(name)
        try t.expectShape([count], origin: source.origin)
        return t.floats()
    }

    /// The standard HF LLaMA-layout block (`model.layers.i.self_attn.*`, `mlp.*`, two norms).
    static func llamaLayoutBlock(
        layer i: Int, config c: ModelConfig, source s: WeightSource,
        qkvBias: Bool, outputBias: Bool, mlpBias: Bool
    ) throws -> DecoderBlockWeights {
        let p = "model.layers.\(i)."
        let d = c.hiddenSize, f = c.intermediateSize
        let inNorm = try vector(s, p + "input_layernorm.weight", count: d)
        let postNorm = try vector(s, p + "post_attention_layernorm.weight", count: d)
        return DecoderBlockWeights(
            inputNorm: inNorm.constPointer, postAttentionNorm: postNorm.constPointer,
            q: try linear(s, p + "self_attn.q_proj", out: c.qDim, in: d, bias: qkvBias),
            k: try linear(s, p + "self_attn.k_proj", out: c.kvDim, in: d, bias: qkvBias),
            v: try linear(s, p + "self_attn.v_proj", out: c.kvDim, in: d, bias: qkvBias),
            o: try linear(s, p + "self_attn.o_proj", out: d, in: c.qDim, bias: outputBias),
            gate: try linear(s, p + "mlp.gate_proj", out: f, in: d, bias: mlpBias),
            up: try linear(s, p + "mlp.up_proj", out: f, in: d, bias: mlpBias),
            down: try linear(s, p + "mlp.down_proj", out: d, in: f, bias: mlpBias),
            owners: [inNorm, postNorm])
    }
}
