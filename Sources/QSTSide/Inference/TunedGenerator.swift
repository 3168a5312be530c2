import Foundation
import QSTEngine
import QSTFormat

/// One side network's continuation: the same record as the base model's generation.
public typealias TunedGenerationResult = GenerationResult

/// Autoregressive generation with the tuned model, one continuation per side network: the prompt is
/// prefilled once per sequence in one batched forward, then each step runs every still-active sequence
/// through one base forward (finished sequences ride along as masked padding).
public final class TunedGenerator {
    public let model: TunedModel

    public init(model: TunedModel) { self.model = model }

    /// - Parameter onToken: `(side index, token)`; return false to stop that side's continuation.
    public func generate(
        prompt: [Int32], maxTokens: Int, sampling: SamplingOptions = SamplingOptions(),
        stopTokens: Set<Int32> = [], contextLimit: Int? = nil,
        onToken: (Int, Int32) throws -> Bool = { _, _ in true }
    ) throws -> [TunedGenerationResult] {
        try sampling.validate()
        guard !prompt.isEmpty else { throw QSTError("generate: the prompt is empty") }
        let base = model.base
        let limit = contextLimit ?? base.config.maxPositionEmbeddings ?? (prompt.count + maxTokens)
        guard prompt.count < limit else {
            throw QSTError("generate: prompt of \(prompt.count) tokens does not fit the context of \(limit)")
        }
        let k = model.sides.count, V = base.vocabSize
        let capacity = min(limit, prompt.count + maxTokens)
        let cache = try model.makeCache(batch: k, capacity: capacity, routing: .perSequence)
        var samplers = (0..<k).map { _ in Sampler(sampling) }
        var results = (0..<k).map { _ in
            TunedGenerationResult(
                promptTokens: prompt.count, tokens: [], stopReason: "max_tokens", prefillSeconds: 0,
                decodeSeconds: 0)
        }
        guard maxTokens > 0 else { return results }
        let t0 = Date()
        var step = try model.forward(
            ids: Array((0..<k).map { _ in prompt }.joined()), batch: k, newTokens: prompt.count,
            cache: cache, lastOnly: true)
        let prefill = Date().timeIntervalSince(t0)
        var active = [Bool](repeating: true, count: k)
        let t1 = Date()
        while true {
            var next = [Int32](repeating: 0, count: k)
            for j in 0..<k where active[j] {
                let logits = base.decodeLogits(hidden: step.heads[j].constPointer, rows: 1)
                let id = samplers[j].next(logits: logits.constPointer, vocab: V)
                next[j] = id
                results[j].tokens.append(id)
                if stopTokens.contains(id) {
                    results[j].stopReason = "eos"; active[j] = false
                } else if try !onToken(j, id) {
                    results[j].stopReason = "stopped"; active[j] = false
                } else if results[j].tokens.count >= maxTokens {
                    results[j].stopReason = "max_tokens"; active[j] = false
                } else if cache.base.length >= cache.base.capacity {
                    results[j].stopReason = "context"; active[j] = false
                }
            }
            guard active.contains(true) else { break }
            step = try model.forward(
                ids: next, batch: k, newTokens: 1, valid: active.map { $0 ? 1 : 0 }, cache: cache,
                lastOnly: true)
        }
        let decode = Date().timeIntervalSince(t1)
        for j in 0..<k { results[j].prefillSeconds = prefill; results[j].decodeSeconds = decode }
        return results
    }
}
