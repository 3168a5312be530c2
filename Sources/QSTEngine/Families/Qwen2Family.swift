/// Qwen2: the LLaMA layout with biases on q/k/v (none on o_proj or the MLP) and, usually, an untied head.
public enum Qwen2Family: ModelFamily {
    public static let modelTypes = ["qwen2"]

    public static func blockWeights(layer: Int, config: ModelConfig, source: WeightSource) throws -> DecoderBlockWeights
    {
        try WeightLoading.llamaLayoutBlock(
            layer: layer, config: config, source: source,
            qkvBias: true, outputBias: false, mlpBias: false)
    }
}
