import CBLAS
import Foundation
import QSTEngine
import QSTNN

/// Timings of prompt processing (`pp`: one forward over `promptTokens` tokens plus the last row's logits) and
/// token generation (`tg`: tokens per second decoding with the KV cache), plus what plain F32 `cblas_sgemm`
/// achieves on the model's own linear shapes in the same process, as a yardstick.
public struct ForwardBenchmark {
    public struct Stat: Codable, Sendable {
        public var bestTokensPerSecond: Double
        public var medianTokensPerSecond: Double
        public var secondsPerRun: [Double]
    }
    public struct SGEMMShape: Codable, Sendable {
        public var m: Int, n: Int, k: Int
        public var gflops: Double
    }
    public struct Result: Codable, Sendable {
        public var promptTokens: Int
        public var generatedTokens: Int
        public var repeats: Int
        public var pp: Stat
        public var tg: Stat
        /// Model FLOPs per prompt token (2 × parameters touched by the matmuls, attention excluded).
        public var flopsPerToken: Double
        public var ppGFLOPS: Double
        public var sgemm: [SGEMMShape]
    }

    public let model: FrozenModel

    public init(model: FrozenModel) { self.model = model }

    static func stat(tokens: Int, _ seconds: [Double]) -> Stat {
        let s = seconds.sorted()
        let median = s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
        return Stat(
            bestTokensPerSecond: Double(tokens) / s[0], medianTokensPerSecond: Double(tokens) / median,
            secondsPerRun: seconds)
    }

    /// `afterModelRuns` is called once the model timings are done, before the sgemm yardstick allocates its
    /// own matrices (the place to read peak memory).
    public func run(
        promptTokens: Int = 512, generatedTokens: Int = 128, repeats: Int = 3,
        afterModelRuns: () -> Void = {}
    ) throws -> Result {
        let c = model.config
        var s: UInt64 = 42
        let ids: [Int32] = (0..<promptTokens).map { _ in
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return Int32((s >> 33) % UInt64(c.vocabSize))
        }
        // Warm-up as llama-bench does it (one whole prompt run, then one decoding step): every weight page,
        // scratch buffer and packed panel is touched once, so the timed runs measure compute, not first
        // faults, and both tools are timed after the same warm-up.
        let warmHidden = try model.forward(ids: ids, batch: 1, newTokens: promptTokens)
        _ = model.decodeLogits(hidden: warmHidden.constPointer + (promptTokens - 1) * c.headInputSize, rows: 1)
        let warmCache = model.makeCache(batch: 1, capacity: 2)
        let warmStep = try model.forward(ids: [ids[0]], batch: 1, newTokens: 1, cache: warmCache)
        _ = model.decodeLogits(hidden: warmStep.constPointer, rows: 1)
        var pp: [Double] = [], tg: [Double] = []
        for _ in 0..<repeats {
            let t0 = Date()
            let h = try model.forward(ids: ids, batch: 1, newTokens: promptTokens)
            _ = model.decodeLogits(hidden: h.constPointer + (promptTokens - 1) * c.headInputSize, rows: 1)
            pp.append(Date().timeIntervalSince(t0))
            let cache = model.makeCache(batch: 1, capacity: generatedTokens + 1)
            var next: Int32 = ids[0]
            let t1 = Date()
            for _ in 0..<generatedTokens {
                let h = try model.forward(ids: [next], batch: 1, newTokens: 1, cache: cache)
                let logits = model.decodeLogits(hidden: h.constPointer, rows: 1)
                next = Int32(Softmax.argmax(logits.constPointer, d: c.vocabSize))
            }
            tg.append(Date().timeIntervalSince(t1))
        }
        afterModelRuns()
        let shapes = linearShapes()
        let flops = 2.0 * Double(shapes.reduce(0) { $0 + $1.count * $1.n * $1.k })
        let ppStat = Self.stat(tokens: promptTokens, pp)
        var gemm: [SGEMMShape] = []
        for shape in shapes {
            for m in [promptTokens, 1] { gemm.append(Self.timeSGEMM(m: m, n: shape.n, k: shape.k)) }
        }
        return Result(
            promptTokens: promptTokens, generatedTokens: generatedTokens, repeats: repeats,
            pp: ppStat, tg: Self.stat(tokens: generatedTokens, tg), flopsPerToken: flops,
            ppGFLOPS: flops * ppStat.bestTokensPerSecond / 1e9, sgemm: gemm)
    }

    /// Distinct (out, in) linear shapes with how often each occurs per token (all layers and the head).
    func linearShapes() -> [(n: Int, k: Int, count: Int)] {
        let c = model.config, L = c.numHiddenLayers
        var byShape: [String: (n: Int, k: Int, count: Int)] = [:]
        func add(_ n: Int, _ k: Int, _ times: Int) {
            let key = "\(n)x\(k)"
            byShape[key, default: (n, k, 0)].count += times
        }
        add(c.qDim, c.hiddenSize, L); add(c.kvDim, c.hiddenSize, 2 * L); add(c.hiddenSize, c.qDim, L)
        add(c.intermediateSize, c.hiddenSize, 2 * L); add(c.hiddenSize, c.intermediateSize, L)
        add(c.vocabSize, c.hiddenSize, 1)
        return byShape.values.sorted { $0.n * $0.k > $1.n * $1.k }
    }

    /// Best of a few timed `cblas_sgemm` calls `[m,k]·[n,k]ᵀ` with BLAS's own threads.
    static func timeSGEMM(m: Int, n: Int, k: Int) -> SGEMMShape {
        let x = FloatBuffer(count: m * k), w = FloatBuffer(count: n * k), y = FloatBuffer(count: m * n)
        for i in 0..<(m * k) { x[i] = Float(i % 7) * 0.1 }
        for i in 0..<(n * k) { w[i] = Float(i % 5) * 0.1 }
        var best = Double.infinity
        let reps = m == 1 ? 20 : 3
        for _ in 0..<reps {
            let t0 = Date()
            cblas_sgemm(
                CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k), 1, x.pointer, Int32(k),
                w.pointer, Int32(k), 0, y.pointer, Int32(n))
            best = min(best, Date().timeIntervalSince(t0))
        }
        return SGEMMShape(m: m, n: n, k: k, gflops: 2.0 * Double(m * n * k) / best / 1e9)
    }
}
