import Foundation
import QSTEngine
import QSTSide
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
        /// Process CPU seconds (user + system) per whole run: less sensitive to other load on the machine
        /// than wall time.
        public var baseCPUSeconds: [Double] = []
        public var tunedCPUSeconds: [Double] = []
        /// Tuned ÷ base CPU time per run, medians (≤ 1/0.9 ≈ 1.11 means at least 0.9× the speed).
        public var cpuRatio: Double {
            let b = TunedBenchmark.median(baseCPUSeconds)
            return b > 0 ? TunedBenchmark.median(tunedCPUSeconds) / b : 0
        }
        public var baseBest: Double { baseRuns.max() ?? 0 }
        public var tunedBest: Double { tunedRuns.max() ?? 0 }
        public var baseMedian: Double { TunedBenchmark.median(baseRuns) }
        public var tunedMedian: Double { TunedBenchmark.median(tunedRuns) }
        /// Tuned ÷ base speed, medians.
        public var ratio: Double { baseMedian > 0 ? tunedMedian / baseMedian : 0 }

        enum CodingKeys: String, CodingKey {
            case promptTokens, generatedTokens, sides, baseRuns, tunedRuns, basePrefill, tunedPrefill, summary
            case baseCPUSeconds, tunedCPUSeconds
        }
        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(promptTokens, forKey: .promptTokens); try c.encode(generatedTokens, forKey: .generatedTokens)
            try c.encode(sides, forKey: .sides); try c.encode(baseRuns, forKey: .baseRuns);
            try c.encode(tunedRuns, forKey: .tunedRuns)
            try c.encode(basePrefill, forKey: .basePrefill); try c.encode(tunedPrefill, forKey: .tunedPrefill)
            try c.encode(baseCPUSeconds, forKey: .baseCPUSeconds);
            try c.encode(tunedCPUSeconds, forKey: .tunedCPUSeconds)
            try c.encode(
                [
                    "baseBest": baseBest, "tunedBest": tunedBest, "baseMedian": baseMedian, "tunedMedian": tunedMedian,
                    "ratio": ratio, "basePrefillMedian": TunedBenchmark.median(basePrefill),
                    "tunedPrefillMedian": TunedBenchmark.median(tunedPrefill), "cpuTimeRatio": cpuRatio,
                ],
                forKey: .summary)
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
            baseCPUSeconds = try c.decodeIfPresent([Double].self, forKey: .baseCPUSeconds) ?? []
            tunedCPUSeconds = try c.decodeIfPresent([Double].self, forKey: .tunedCPUSeconds) ?? []
        }
        init(promptTokens: Int, generatedTokens: Int, sides: Int) {
            self.promptTokens = promptTokens; self.generatedTokens = generatedTokens; self.sides = sides
            baseRuns = []; tunedRuns = []
        }
    }

    static func cpuSeconds() -> Double {
        var u = rusage()
        getrusage(RUSAGE_SELF.rawValue, &u)
        return Double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + Double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6
    }

    public static func median(_ xs: [Double]) -> Double {
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
            let c0 = cpuSeconds()
            let b = try plain.generate(prompt: prompt, maxTokens: generate)
            let c1 = cpuSeconds()
            let t = try tuned.generate(prompt: prompt, maxTokens: generate)
            let c2 = cpuSeconds()
            guard k > 0 else { continue }
            r.baseCPUSeconds.append(c1 - c0)
            r.tunedCPUSeconds.append(c2 - c1)
            r.baseRuns.append(b.decodeTokensPerSecond)
            r.tunedRuns.append(t[0].decodeTokensPerSecond)
            r.basePrefill.append(b.prefillTokensPerSecond)
            r.tunedPrefill.append(t[0].prefillTokensPerSecond)
        }
        return r
    }
}
