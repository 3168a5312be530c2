import Foundation
#if canImport(Glibc)
    import Glibc
#endif
import QSTEngine
import QSTSide
import QSTNN

/// Training throughput against forward-only throughput on the same synthetic batches, in one process.
public struct SideBenchmarkResult: Codable, Sendable {
    public var batch: Int, seqLen: Int, repeats: Int
    /// Fraction of positions carrying a label (≈1 = every next token, as causal-LM tuning).
    public var labelledFraction: Double
    /// The frozen model's hidden-state forward alone.
    public var backboneForwardTokensPerSecond: Double
    /// Evaluation: backbone + side forward + cross-entropy at the labelled positions, no gradient.
    public var evaluationTokensPerSecond: Double
    /// A full optimizer step: forward, loss, backward, clipping, AdamW.
    public var trainingTokensPerSecond: Double
    public var trainingVsBackboneForward: Double
    public var trainingVsEvaluation: Double
    /// The same ratios from process CPU time instead of wall time: steadier when other programs share the cores.
    public var cpuTrainingVsBackboneForward: Double
    public var cpuTrainingVsEvaluation: Double
    public var peakRSSBytes: Int
}

public enum SideBenchmark {
    /// Runs each mode `repeats` times after one warm-up, on random tokens (seeded).
    public static func run(
        model: SideModel, batch: Int, seqLen: Int, repeats: Int, labelEveryToken: Bool,
        training: TrainingConfig = TrainingConfig(), peakRSS: () -> Int
    ) throws -> SideBenchmarkResult {
        var rng = SplitMix64(seed: 1234)
        let V = model.backbone.vocabSize
        let ids = (0..<(batch * seqLen)).map { _ in Int32(rng.next() % UInt64(V)) }
        var labels = [Int32](repeating: ChunkedCrossEntropy.ignoreIndex, count: ids.count)
        for b in 0..<batch {
            for t in 0..<(seqLen - 1) where labelEveryToken || t == seqLen - 2 {
                labels[b * seqLen + t] = ids[b * seqLen + t + 1]
            }
        }
        var targets: [Float]?
        if let k = model.weights.config.numLabels {
            // A classification head takes class indices (or regression targets) instead of tokens.
            labels = labels.map { $0 == ChunkedCrossEntropy.ignoreIndex ? $0 : (k == 1 ? 0 : $0 % Int32(k)) }
            if k == 1 { targets = [Float](repeating: 0.5, count: ids.count) }
        }
        let sb = SideBatch(
            tokens: TokenBatch(ids: ids, lengths: Array(repeating: seqLen, count: batch), seqLen: seqLen),
            labels: labels, targets: targets)
        func cpuSeconds() -> Double {
            var ts = timespec()
            clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
            return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
        }
        var cpu: [Double] = []
        func time(_ body: () throws -> Void) rethrows -> Double {
            try body()  // warm-up
            let start = Date(), c0 = cpuSeconds()
            for _ in 0..<repeats { try body() }
            cpu.append(cpuSeconds() - c0)
            return Double(repeats * batch * seqLen) / Date().timeIntervalSince(start)
        }
        let forward = try time { _ = try model.backbone.forwardHiddenStates(sb.tokens) { _, _ in } }
        let evaluation = try time { _ = try model.evaluationLoss(sb) }
        let optimizer = AdamW(parameters: model.weights.parameters, config: training.adamW)
        var dropout = SplitMix64(seed: 1)
        let train = try time {
            model.weights.zeroGradients()
            _ = try model.trainStep(sb, rng: &dropout)
            GradientClipping.clip(optimizer.parameters, maxNorm: 1)
            optimizer.update(lr: 1e-4)
        }
        return SideBenchmarkResult(
            batch: batch, seqLen: seqLen, repeats: repeats,
            labelledFraction: Double(sb.labelledCount) / Double(ids.count),
            backboneForwardTokensPerSecond: forward, evaluationTokensPerSecond: evaluation,
            trainingTokensPerSecond: train, trainingVsBackboneForward: train / forward,
            trainingVsEvaluation: train / evaluation,
            cpuTrainingVsBackboneForward: cpu[0] / cpu[2], cpuTrainingVsEvaluation: cpu[1] / cpu[2],
            peakRSSBytes: peakRSS())
    }
}
