import Foundation
import QSTEngine
import QSTFormat
import QSTNN

/// A projection of the base decoder block that can carry a LoRA adapter (PEFT's `target_modules` names).
public enum LoRATarget: String, CaseIterable, Codable, Sendable {
    case q = "q_proj", k = "k_proj", v = "v_proj", o = "o_proj"
    case gate = "gate_proj", up = "up_proj", down = "down_proj"

    /// Module path inside `model.layers.{i}`.
    public var modulePath: String {
        switch self {
        case .q, .k, .v, .o: return "self_attn." + rawValue
        case .gate, .up, .down: return "mlp." + rawValue
        }
    }

    /// `(in, out)` features of this projection in a block of `shape`.
    public func features(_ s: DecoderBlockShape) -> (inF: Int, outF: Int) {
        switch self {
        case .q: return (s.hidden, s.qDim)
        case .k, .v: return (s.hidden, s.kvDim)
        case .o: return (s.qDim, s.hidden)
        case .gate, .up: return (s.hidden, s.intermediate)
        case .down: return (s.intermediate, s.hidden)
        }
    }
}

/// LoRA hyper-parameters. Defaults are PEFT's usual ones (r 8, alpha 16, dropout 0.05) on every
/// attention and MLP projection, as QLoRA targets all linear layers.
public struct LoRAConfig: Codable, Sendable, Equatable {
    public var r: Int = 8
    public var alpha: Double = 16
    public var dropout: Float = 0.05
    public var targets: [LoRATarget] = LoRATarget.allCases
    public var seed: UInt64 = 0
    /// Recorded as `base_model_name_or_path` in adapter_config.json.
    public var baseModel: String = ""

    public init(
        r: Int = 8, alpha: Double = 16, dropout: Float = 0.05, targets: [LoRATarget] = LoRATarget.allCases,
        seed: UInt64 = 0, baseModel: String = ""
    ) {
        self.r = r; self.alpha = alpha; self.dropout = dropout; self.targets = targets; self.seed = seed
        self.baseModel = baseModel
    }

    /// PEFT's `scaling = lora_alpha / r` (no rsLoRA).
    public var scaling: Float { Float(alpha / Double(r)) }

    public func validate() throws {
        guard r >= 1 else { throw QSTError("LoRA: rank r must be ≥ 1, got \(r)") }
        guard alpha > 0, alpha.isFinite else { throw QSTError("LoRA: lora_alpha must be positive, got \(alpha)") }
        guard dropout >= 0, dropout < 1 else { throw QSTError("LoRA: dropout must be in [0, 1), got \(dropout)") }
        guard !targets.isEmpty, Set(targets).count == targets.count else {
            throw QSTError("LoRA: target modules must be non-empty and distinct, got \(targets.map(\.rawValue))")
        }
    }

    /// Parses a comma-separated `q_proj,v_proj` list (or `all`).
    public static func parseTargets(_ text: String) throws -> [LoRATarget] {
        if text == "all" { return LoRATarget.allCases }
        return try text.split(separator: ",").map { part in
            let name = part.trimmingCharacters(in: .whitespaces)
            guard let t = LoRATarget(rawValue: name) else {
                throw QSTError(
                    "LoRA: unknown target module '\(name)' (use \(LoRATarget.allCases.map(\.rawValue).joined(separator: ", ")))"
                )
            }
            return t
        }
    }
}

/// One adapter pair `A [r, in]`, `B [out, r]` at offsets in the flat buffers.
public struct LoRAPair: Sendable, Equatable {
    public var layer: Int
    public var target: LoRATarget
    public var inF: Int, outF: Int
    public var offsetA: Int, offsetB: Int
    /// PEFT state-dict name prefix, e.g. `base_model.model.model.layers.3.self_attn.q_proj`.
    public var prefix: String { "base_model.model.model.layers.\(layer).\(target.modulePath)" }
    public var nameA: String { prefix + ".lora_A.weight" }
    public var nameB: String { prefix + ".lora_B.weight" }
}

/// Every LoRA matrix in one flat F32 buffer with a same-shaped gradient buffer.
public final class LoRAWeights: @unchecked Sendable {
    public let config: LoRAConfig
    public let layerCount: Int
    public let shape: DecoderBlockShape
    public let pairs: [LoRAPair]
    public let values: FloatBuffer
    public let grads: FloatBuffer
    /// `pairIndex[layer][target]`.
    let pairIndex: [[LoRATarget: Int]]

    /// Zero-filled adapters (call `initialize` for PEFT's init).
    public init(config: LoRAConfig, layerCount: Int, shape: DecoderBlockShape) throws {
        try config.validate()
        self.config = config; self.layerCount = layerCount; self.shape = shape
        var pairs: [LoRAPair] = [], index: [[LoRATarget: Int]] = []
        var offset = 0
        func take(_ count: Int) -> Int { let o = offset; offset += (count + 15) / 16 * 16; return o }
        for i in 0..<layerCount {
            var row: [LoRATarget: Int] = [:]
            // Layer-major, then in PEFT's module order, so the file lists tensors in a stable order.
            for t in LoRATarget.allCases where config.targets.contains(t) {
                let (inF, outF) = t.features(shape)
                let a = take(config.r * inF), b = take(outF * config.r)
                row[t] = pairs.count
                pairs.append(LoRAPair(layer: i, target: t, inF: inF, outF: outF, offsetA: a, offsetB: b))
            }
            index.append(row)
        }
        self.pairs = pairs
        pairIndex = index
        values = FloatBuffer(count: offset)
        grads = FloatBuffer(count: offset)
    }

    public var parameterCount: Int { pairs.reduce(0) { $0 + config.r * ($1.inF + $1.outF) } }

    public func pair(layer: Int, _ t: LoRATarget) -> LoRAPair? { pairIndex[layer][t].map { pairs[$0] } }

    /// PEFT's default init: A ~ kaiming_uniform(a=√5) = U(±1/√in), B = 0 (the adapted model starts as the base).
    /// Uniforms are `(2u − 1)/√in` from SplitMix64(seed), pair by pair.
    public func initialize(seed: UInt64) {
        values.zero()
        var rng = SplitMix64(seed: seed)
        for p in pairs {
            let bound = 1 / Float(p.inF).squareRoot()
            for j in 0..<(config.r * p.inF) { values[p.offsetA + j] = (2 * rng.nextFloat() - 1) * bound }
        }
    }

    public func zeroGradients() { grads.zero() }

    /// AdamW parameters, A then B per pair (PEFT applies weight decay to both).
    public var parameters: [Parameter] {
        pairs.flatMap { p in
            [
                Parameter(
                    name: p.nameA, value: values.pointer + p.offsetA, grad: grads.pointer + p.offsetA,
                    count: config.r * p.inF),
                Parameter(
                    name: p.nameB, value: values.pointer + p.offsetB, grad: grads.pointer + p.offsetB,
                    count: p.outF * config.r),
            ]
        }
    }
}
