import Foundation
import QSTEngine
import QSTFormat

/// Generation speed of the base alone against the base with its side network(s), in one process on the
/// same mapped weights. Runs alternate (base, tuned, base, tuned, …) so drifting machine load hits both.
public enum TunedBenchmark {
    public struct Result: Codable, Sendable {
        public var promptTokens: Int
        public var generatedTokens: Int
        public var sides: Int
        /// Decode tokens per second of each run (per sequence for the tuned runs).
        public var baseRuns: [Double]
        public var tunedRuns: [Double]
        /// Prompt (prefill) tokens per second of each run.
        public var basePrefill: [Double] = []
        public var tunedPrefill: [Double] = []
        public var baseBest: Double { baseRuns.max() ?? 0 }
        public var tunedBest: Double { tunedRuns.max() ?? 0 }
        public var baseMedian: Double { TunedBenchmark.median(baseRuns) }
        public var tunedMedian: Double { TunedBenchmark.median(tunedRuns) }
        /// Tuned ÷ base speed, medians.
        public var ratio: Double { baseMedian > 0 ? tunedMedian / baseMedian : 0 }

        enum CodingKeys: String, CodingKey {
            case promptTokens, generatedTokens, sides, baseRuns, tunedRuns, basePrefill, tunedPrefill, summary
        }
        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(promptTokens, forKey: .promptTokens); try c.encode(generatedTokens, forKey: .generatedTokens)
            try c.encode(sides, forKey: .sides); try c.encode(baseRuns, forKey: .baseRuns); try c.encode(tunedRuns, forKey: .tunedRuns)
            try c.encode(basePrefill, forKey: .basePrefill); try c.encode(tunedPrefill, forKey: .tunedPrefill)
            try c.encode(["baseBest": baseBest, "tunedBest": tunedBest, "baseMedian": baseMedian, "tunedMedian": tunedMedian,
                          "ratio": ratio, "basePrefillMedian": TunedBenchmark.median(basePrefill),
                          "tunedPrefillMedian": TunedBenchmark.median(tunedPrefill)], forKey: .summary)
        }
        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            promptTokens = try c.decode(Int.self, forKey: .promptTokens)
            generatedTokens = try c.decode(Int.self, forKey: .generatedTokens)
            sides = try c.decode(Int.self, forKey: .sides)
            baseRuns = try c.decode([Double].self, forKey: .baseRuns)
            tunedRuns = try c.decode([Double].self, forKey: .tunedRuns)
            basePrefill = try c.decodeIfPresent([Double].self, forKey: .basePrefill) ?? []
            tunedPrefill = try c.decodeIfPresent([Double].self, forKey: .tunedPrefill) ?? []
        }
        init(promptTokens: Int, generatedTokens: Int, sides: Int) {
            self.promptTokens = promptTokens; self.generatedTokens = generatedTokens; self.sides = sides
            baseRuns = []; tunedRuns = []
        }
    }

    static func median(_ xs: [Double]) -> Double {
        guard !xs.isEmpty else { return 0 }
        let s = xs.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    /// Greedy generation of `generate` tokens after a `promptTokens`-token prompt (no stop token), `repeats`
    /// times each, after one untimed warm-up of each.
    public static func run(model: TunedModel, promptTokens: Int, generate: Int, repeats: Int) throws -> Result {
        guard promptTokens > 0, generate > 1, repeats > 0 else {
            throw QSTError("benchmark: prompt, generated tokens (> 1) and repeats must be positive")
        }
        let V = Int32(model.base.vocabSize)
        let prompt = (0..<promptTokens).map { Int32(($0 * 7919 + 11) % Int(V)) }
        let plain = Generator(model: model.base), tuned = TunedGenerator(model: model)
        var r = Result(promptTokens: promptTokens, generatedTokens: generate, sides: model.sides.count)
        for k in 0...repeats {
            let b = try plain.generate(prompt: prompt, maxTokens: generate)
            let t = try tuned.generate(prompt: prompt, maxTokens: generate)
            guard k > 0 else { continue }
            r.baseRuns.append(b.decodeTokensPerSecond)
            r.tunedRuns.append(t[0].decodeTokensPerSecond)
            r.basePrefill.append(b.prefillTokensPerSecond)
            r.tunedPrefill.append(t[0].prefillTokensPerSecond)
        }
        return r
    }
}
