import Foundation
import QSTEngine
import QSTFormat

/// Creating a side network for a base model and describing what training it will cost.
public enum SideSetup {
    /// The base model's shape from a `.qst4` container, a safetensors checkpoint folder or a bare config.json,
    /// and the bytes of its stored weights (0 for a bare config).
    public static func baseShape(modelPath: String) throws -> (shape: BaseShape, weightBytes: Int) {
        if modelPath.hasSuffix(".json") {
            guard let data = FileManager.default.contents(atPath: modelPath) else {
                throw QSTError.file(modelPath, "cannot read")
            }
            return (try BaseShape.parse(configJSON: data, context: modelPath), 0)
        }
        let source = try openWeightSource(path: modelPath)
        return (
            try BaseShape.parse(configJSON: try source.configJSON(), context: modelPath),
            source.weightBytes
        )
    }

    /// Summary of a freshly initialised (or loaded) side network.
    public struct Report: Codable, Sendable {
        public var config: SideConfig
        public var trainableParameters: Int
        /// Parameters of the base model (embeddings, layers, final norm; the head when not tied is ignored).
        public var baseParameters: Int
        public var trainableShare: Double
        public var optimizerStateBytes: Int
        public var memory: TrainingMemoryEstimate
        public var memoryTotal: Int
        public var batch: Int
        public var seqLen: Int
        /// How qst-init-side started the layer gates (not stored in side_config.json: an initial value only).
        public var gateInit: SideGateInit? = nil
    }

    /// Parameters of a base of this shape (embeddings + layers + final norm; SideFamily.baseParameterCount).
    public static func baseParameterCount(_ s: BaseShape) -> Int { s.family.baseParameterCount(s) }

    /// OPT: token embeddings [V, e], project_in/out when e ≠ d, layers (q, k, v, out, fc1, fc2 with biases,
    /// two LayerNorms), the final LayerNorm of pre-norm models. Learned positions are not counted (their number
    /// is not part of the side network's base shape).
    static func optParameterCount(_ s: BaseShape) -> Int {
        let d = s.hiddenSize, f = s.intermediateSize, e = s.headSize
        let biases = s.optBias ? 4 * d + f + d : 0
        let perLayer = 4 * d * d + 2 * d * f + biases + 4 * d
        return s.vocabSize * e + (e != d ? 2 * e * d : 0) + s.layerCount * perLayer + (s.optLayerNormBefore ? 2 * d : 0)
    }

    public static func report(weights: SideWeights, batch: Int, seqLen: Int, backboneBytes: Int) -> Report {
        let p = weights.parameterCount, base = baseParameterCount(weights.config.base)
        let mem = TrainingMemoryEstimate(
            config: weights.config, parameterCount: p, batch: batch, seqLen: seqLen,
            backboneBytes: backboneBytes)
        return Report(
            config: weights.config, trainableParameters: p, baseParameters: base,
            trainableShare: Double(p) / Double(base), optimizerStateBytes: 8 * p, memory: mem,
            memoryTotal: mem.total, batch: batch, seqLen: seqLen)
    }
}
