/// Llama 2/3, SmolLM and Mistral: bias-free by default; `attention_bias` adds q/k/v/o biases and
/// `mlp_bias` MLP biases (LlamaConfig). Mistral's sliding window is checked against sequence lengths
/// by `ModelConfig.checkSequenceLength`.
public enum LlamaFamily: ModelFamily {
    public static let modelTypes = ["llama", "mistral"]

    public static func blockWeights(layer: Int, config: ModelConfig, source: WeightSource) throws -> DecoderBlockWeights
    {
        try WeightLoading.llamaLayoutBlock(
            layer: layer, config: config, source: source,
            qkvBias: config.attentionBias == true,
            outputBias: config.attentionBias == true,
            mlpBias: config.mlpBias == true)
    }
}
