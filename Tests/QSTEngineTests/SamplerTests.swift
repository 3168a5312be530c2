import Foundation
import QSTEngine
import QSTNN
import XCTest

/// `Sampler`: the nucleus found without sorting the vocabulary must be the one a full sort gives, and the
/// draws must follow the softmax distribution.
final class SamplerTests: XCTestCase {
    /// The specification, literally: weights exp(l/T − max) in float64, the whole vocabulary sorted by weight
    /// (ties: lower index first), the shortest prefix whose mass reaches top-p, one uniform draw over it in
    /// that order.
    private struct FullSortReference {
        let options: SamplingOptions
        var rng: SplitMix64
        init(_ o: SamplingOptions) { options = o; rng = SplitMix64(seed: o.seed) }
        mutating func next(_ logits: [Float]) -> Int32 {
            let invT = 1 / Double(options.temperature)
            let mx = logits.map { Double($0) * invT }.max()!
            let w = logits.map { Foundation.exp(Double($0) * invT - mx) }
            let sum = w.reduce(0, +)
            let order = w.indices.sorted { w[$0] > w[$1] || (w[$0] == w[$1] && $0 < $1) }
            var kept = 0, mass = 0.0
            for i in order {
                mass += w[i] / sum
                kept += 1
                if mass >= Double(options.topP) { break }
            }
            let nucleus = order.prefix(kept)
            var u = Double(rng.nextFloat()) * nucleus.reduce(0.0) { $0 + w[$1] }
            for i in nucleus {
                u -= w[i]
                if u <= 0 { return Int32(i) }
            }
            return Int32(nucleus.last!)
        }
    }

    func testNucleusIsTheFullSortsNucleus() {
        var gen = SplitMix64(seed: 11)
        var compared = 0
        for vocab in [5, 300, 3000] {
            // Peaked, flat (the nucleus needs almost every token: k grows to the whole vocabulary) and with ties.
            let shapes: [[Float]] = [
                (0..<vocab).map { _ in Float(gen.nextFloat() * 12 - 6) },
                (0..<vocab).map { _ in Float(gen.nextFloat() * 0.01) },
                (0..<vocab).map { j in Float(j % 7) * 0.5 },
            ]
            for logits in shapes {
                for (t, p) in [(Float(0.7), Float(0.2)), (1.0, 0.9), (1.5, 0.999), (1.0, 0.5)] {
                    let o = SamplingOptions(temperature: t, topP: p, seed: UInt64(vocab) &+ UInt64(compared))
                    var fast = Sampler(o), reference = FullSortReference(o)
                    let a = (0..<40).map { _ in
                        logits.withUnsafeBufferPointer { fast.next(logits: $0.baseAddress!, vocab: vocab) }
                    }
                    let b = (0..<40).map { _ in reference.next(logits) }
                    XCTAssertEqual(a, b, "vocab \(vocab), T \(t), top-p \(p)")
                    compared += 1
                }
            }
        }
        XCTAssertEqual(compared, 36)
    }

    /// Top-p 1 draws in index order (no sort): each token's frequency over many draws is its softmax probability
    /// within 5 standard errors; top-p < 1 the renormalised probability inside the nucleus, 0 outside.
    func testDrawsFollowTheSoftmax() {
        let logits: [Float] = [1.2, -0.3, 2.0, 0.0, 2.0, -4.0, 0.7]
        let n = 70_000
        for (t, p) in [(Float(1.3), Float(1)), (1.0, 0.8)] {
            let w = logits.map { Foundation.exp(Double($0 / t) - Double(2 / t)) }
            let order = w.indices.sorted { w[$0] > w[$1] || (w[$0] == w[$1] && $0 < $1) }
            var inNucleus = Set<Int>(), mass = 0.0
            for i in order {
                inNucleus.insert(i)
                mass += w[i] / w.reduce(0, +)
                if mass >= Double(p) { break }
            }
            let total = inNucleus.reduce(0.0) { $0 + w[$1] }
            var sampler = Sampler(SamplingOptions(temperature: t, topP: p, seed: 5))
            var counts = [Int](repeating: 0, count: logits.count)
            for _ in 0..<n {
                counts[
                    Int(logits.withUnsafeBufferPointer { sampler.next(logits: $0.baseAddress!, vocab: logits.count) })] +=
                    1
            }
            for j in logits.indices {
                let q = inNucleus.contains(j) ? w[j] / total : 0
                let f = Double(counts[j]) / Double(n), se = (q * (1 - q) / Double(n)).squareRoot()
                XCTAssertEqual(f, q, accuracy: 5 * se + 1e-12, "T \(t) top-p \(p) token \(j)")
            }
            XCTAssertEqual(counts.reduce(0, +), n)
        }
    }
}
