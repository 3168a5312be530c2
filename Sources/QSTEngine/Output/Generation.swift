import Foundation
import QSTFormat
import QSTNN

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
