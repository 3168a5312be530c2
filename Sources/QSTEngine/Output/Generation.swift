import Foundation
import QSTFormat
import QSTNN

/// Next-token choice: greedy when `temperature` is 0, else temperature + nucleus (top-p) sampling.
public struct SamplingOptions: Sendable, Equatable {
    public var temperature: Float
    public var topP: Float
    public var seed: UInt64

    public init(temperature: Float = 0, topP: Float = 1, seed: UInt64 = 0) {
        self.temperature = temperature; self.topP = topP; self.seed = seed
    }

    public func validate() throws {
        guard temperature >= 0, temperature.isFinite else { throw QSTError("temperature \(temperature) must be ≥ 0") }
        guard topP > 0, topP <= 1 else { throw QSTError("top-p \(topP) must be in (0, 1]") }
    }
}

public struct Sampler {
    public let options: SamplingOptions
    private var rng: SplitMix64

    public init(_ options: SamplingOptions) {
        self.options = options
        rng = SplitMix64(seed: options.seed)
    }

    public mutating func next(logits: UnsafePointer<Float>, vocab: Int) -> Int32 {
        if options.temperature == 0 { return Int32(Softmax.argmax(logits, d: vocab)) }
        let invT = 1 / Double(options.temperature)
        var mx = -Double.infinity
        for j in 0..<vocab { mx = max(mx, Double(logits[j]) * invT) }
        var probs = [Double](repeating: 0, count: vocab)
        var sum = 0.0
        for j in 0..<vocab { probs[j] = Foundation.exp(Double(logits[j]) * invT - mx); sum += probs[j] }
        // Nucleus: the smallest set of most likely tokens whose mass reaches top-p.
        var order = Array(0..<vocab)
        order.sort { probs[$0] > probs[$1] || (probs[$0] == probs[$1] && $0 < $1) }
        var kept = 0, mass = 0.0
        for idx in order {
            mass += probs[idx] / sum
            kept += 1
            if mass >= Double(options.topP) { break }
        }
        let nucleus = order.prefix(kept)
        let total = nucleus.reduce(0.0) { $0 + probs[$1] }
        var u = Double(rng.nextFloat()) * total
        for idx in nucleus {
            u -= probs[idx]
            if u <= 0 { return Int32(idx) }
        }
        return Int32(nucleus.last ?? 0)
    }
}

public struct GenerationResult: Sendable, Codable {
    public var promptTokens: Int
    public var tokens: [Int32]
    /// "eos", "max_tokens", "context" (cache full) or "stopped" (the callback asked to stop).
    public var stopReason: String
    public var prefillSeconds: Double
    public var decodeSeconds: Double

    public init(promptTokens: Int, tokens: [Int32], stopReason: String, prefillSeconds: Double, decodeSeconds: Double) {
        self.promptTokens = promptTokens; self.tokens = tokens; self.stopReason = stopReason
        self.prefillSeconds = prefillSeconds; self.decodeSeconds = decodeSeconds
    }

    public var prefillTokensPerSecond: Double { prefillSeconds > 0 ? Double(promptTokens) / prefillSeconds : 0 }
    public var decodeTokensPerSecond: Double {
        decodeSeconds > 0 ? Double(max(0, tokens.count - 1)) / decodeSeconds : 0
    }
}

/// Autoregressive generation for one sequence with a KV cache: the prompt is prefilled in one forward,
/// then one token per forward.
public final class Generator {
    public let model: FrozenModel

    public init(model: FrozenModel) { self.model = model }

    /// - Parameter onToken: called with each new token; return false to stop.
    public func generate(
        prompt: [Int32], maxTokens: Int, sampling: SamplingOptions = SamplingOptions(),
        stopTokens: Set<Int32> = [], contextLimit: Int? = nil,
        onToken: (Int32) throws -> Bool = { _ in true }
    ) throws -> GenerationResult {
        try sampling.validate()
        guard !prompt.isEmpty else { throw QSTError("generate: the prompt is empty") }
        let limit = contextLimit ?? model.config.maxPositionEmbeddings ?? (prompt.count + maxTokens)
        guard prompt.count < limit else {
            throw QSTError("generate: prompt of \(prompt.count) tokens does not fit the context of \(limit)")
        }
        let capacity = min(limit, prompt.count + maxTokens)
        let cache = model.makeCache(batch: 1, capacity: capacity)
        var sampler = Sampler(sampling)
        var result = GenerationResult(
            promptTokens: prompt.count, tokens: [], stopReason: "max_tokens",
            prefillSeconds: 0, decodeSeconds: 0)
        guard maxTokens > 0 else { return result }
        let t0 = Date()
        var hidden = try model.forward(ids: prompt, batch: 1, newTokens: prompt.count, cache: cache)
        var logits = model.decodeLogits(hidden: hidden.constPointer + (prompt.count - 1) * model.headInputSize, rows: 1)
        result.prefillSeconds = Date().timeIntervalSince(t0)
        let t1 = Date()
        while true {
            let next = sampler.next(logits: logits.constPointer, vocab: model.vocabSize)
            result.tokens.append(next)
            if stopTokens.contains(next) { result.stopReason = "eos"; break }
            if try !onToken(next) { result.stopReason = "stopped"; break }
            if result.tokens.count >= maxTokens { result.stopReason = "max_tokens"; break }
            if cache.length >= cache.capacity { result.stopReason = "context"; break }
            hidden = try model.forward(ids: [next], batch: 1, newTokens: 1, cache: cache)
            logits = model.decodeLogits(hidden: hidden.constPointer, rows: 1)
        }
        result.decodeSeconds = Date().timeIntervalSince(t1)
        return result
    }
}
