import Foundation
import QSTEngine
import QSTNN

/// The order of micro-batches in an epoch, a pure function of (seed, epoch) so a resumed run replays it.
public enum BatchPlan {
    /// Indices of `lengths` grouped into batches of `batchSize` (the last may be smaller).
    /// With `groupByLength`, shuffled examples are sorted by length inside windows of 50 batches and the
    /// resulting batches shuffled again (less padding, still random), as Hugging Face's length grouping.
    public static func batches(
        lengths: [Int], batchSize: Int, seed: UInt64, epoch: Int, shuffle: Bool = true,
        groupByLength: Bool
    ) -> [[Int]] {
        var order = Array(0..<lengths.count)
        var rng = SplitMix64(seed: seed ^ (0xA5A5_0000 &+ UInt64(epoch) &* 0x9E37_79B9))
        if shuffle { fisherYates(&order, &rng) }
        if groupByLength {
            let window = batchSize * 50
            var grouped: [Int] = []
            var start = 0
            while start < order.count {
                let part = order[start..<min(order.count, start + window)]
                grouped += part.sorted { lengths[$0] != lengths[$1] ? lengths[$0] > lengths[$1] : $0 < $1 }
                start += window
            }
            order = grouped
        }
        var out: [[Int]] = []
        var i = 0
        while i < order.count { out.append(Array(order[i..<min(order.count, i + batchSize)])); i += batchSize }
        if groupByLength && shuffle { fisherYates(&out, &rng) }
        return out
    }

    static func fisherYates<T>(_ a: inout [T], _ rng: inout SplitMix64) {
        guard a.count > 1 else { return }
        for i in stride(from: a.count - 1, to: 0, by: -1) {
            let j = Int(rng.next() % UInt64(i + 1))
            a.swapAt(i, j)
        }
    }

    /// Right-pads the examples into one batch (padding positions carry no label).
    public static func collate(_ examples: [TrainingExample], pad: Int32 = 0) -> SideBatch {
        let T = examples.map(\.ids.count).max() ?? 0
        var ids: [Int32] = [], labels: [Int32] = []
        ids.reserveCapacity(examples.count * T); labels.reserveCapacity(examples.count * T)
        for e in examples {
            ids += e.ids + [Int32](repeating: pad, count: T - e.ids.count)
            labels += e.labels + [Int32](repeating: ChunkedCrossEntropy.ignoreIndex, count: T - e.labels.count)
        }
        var targets: [Float]?
        if examples.contains(where: { $0.regressionTarget != nil }) {
            var t = [Float](repeating: 0, count: examples.count * T)
            for (b, e) in examples.enumerated() {
                if let y = e.regressionTarget, let pos = e.answerPosition { t[b * T + pos] = y }
            }
            targets = t
        }
        return SideBatch(
            tokens: TokenBatch(ids: ids, lengths: examples.map(\.ids.count), seqLen: T), labels: labels,
            targets: targets)
    }
}

/// Learning-rate schedules as Hugging Face's `get_scheduler` (step = optimizer updates done so far).
public enum LRSchedule: String, Codable, CaseIterable, Sendable {
    case constant, linear, cosine

    /// The learning rate for update number `step` (0-based) of `total`, after `warmup` linear warm-up steps.
    public func rate(base: Double, step: Int, total: Int, warmup: Int) -> Double {
        if step < warmup { return base * Double(step) / Double(max(1, warmup)) }
        switch self {
        case .constant: return base
        case .linear: return base * max(0, Double(total - step) / Double(max(1, total - warmup)))
        case .cosine:
            let progress = Double(step - warmup) / Double(max(1, total - warmup))
            return base * max(0, 0.5 * (1 + cos(Double.pi * progress)))
        }
    }
}
