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

/// Draws tokens from `SamplingOptions`, one sequence's stream of choices (seeded, so reproducible).
///
/// With weights w_j = exp(logit_j / T − max): top-p 1 draws token j with probability w_j / Σw, scanning the
/// vocabulary in index order; top-p < 1 keeps the nucleus — the smallest set of most likely tokens (ties:
/// lower index first) whose mass reaches top-p — and draws from it in that order.
///
/// Why not sort the vocabulary: a full sort of SmolLM2's 49,152 weights per token took longer than the
/// model's whole decode step, so serving at temperature 1 ran at a third of greedy's speed (BENCHMARKS.md §32).
/// The nucleus is found among the k most likely tokens, k = 64, 512, 4,096, … until their mass reaches
/// top-p (the same set a full sort gives); top-p 1 needs no order at all. The weights' scratch is reused.
public struct Sampler {
    public let options: SamplingOptions
    private var rng: SplitMix64
    private var weights: [Double] = []
    private var candidates: [Int32] = []

    public init(_ options: SamplingOptions) {
        self.options = options
        rng = SplitMix64(seed: options.seed)
    }

    public mutating func next(logits: UnsafePointer<Float>, vocab: Int) -> Int32 {
        if options.temperature == 0 || vocab <= 1 { return Int32(Softmax.argmax(logits, d: vocab)) }
        let invT = 1 / Double(options.temperature), topP = Double(options.topP)
        if weights.count < vocab { weights = [Double](repeating: 0, count: vocab) }
        var mx = -Double.infinity
        for j in 0..<vocab { mx = max(mx, Double(logits[j]) * invT) }
        let u01 = Double(rng.nextFloat())
        // Moved out for the call (no copy), so `nucleus` may use `self` while the weights are borrowed.
        var scratch = weights
        weights = []
        defer { weights = scratch }
        return scratch.withUnsafeMutableBufferPointer { wb -> Int32 in
            let w = wb.baseAddress!
            var sum = 0.0
            for j in 0..<vocab {
                w[j] = Foundation.exp(Double(logits[j]) * invT - mx)
                sum += w[j]
            }
            if topP >= 1 {
                var u = u01 * sum, last = 0
                for j in 0..<vocab where w[j] > 0 {
                    u -= w[j]
                    last = j
                    if u <= 0 { return Int32(j) }
                }
                return Int32(last)  // rounding left u just above 0 after the last token
            }
            let nucleus = self.nucleus(w, vocab: vocab, sum: sum, topP: topP)
            var total = 0.0
            for idx in nucleus { total += w[Int(idx)] }
            var u = u01 * total
            for idx in nucleus {
                u -= w[Int(idx)]
                if u <= 0 { return idx }
            }
            return nucleus.last ?? 0
        }
    }

    /// The most likely tokens, in order, up to and including the one whose mass reaches `topP` (all of them
    /// if it is never reached).
    private mutating func nucleus(_ w: UnsafePointer<Double>, vocab: Int, sum: Double, topP: Double) -> ArraySlice<
        Int32
    > {
        func before(_ a: Int32, _ b: Int32) -> Bool { w[Int(a)] > w[Int(b)] || (w[Int(a)] == w[Int(b)] && a < b) }
        var k = min(vocab, 64)
        while true {
            largest(k, w, vocab: vocab, before: before)
            candidates.sort(by: before)
            var mass = 0.0
            for (n, idx) in candidates.enumerated() {
                mass += w[Int(idx)] / sum
                if mass >= topP { return candidates[...n] }
            }
            if k == vocab { return candidates[...] }
            k = min(vocab, k * 8)
        }
    }

    /// `candidates` = the k tokens that come first by `before`, in no particular order: a heap whose root is
    /// the last of them, replaced whenever a token comes before it (one comparison for most tokens).
    private mutating func largest(
        _ k: Int, _ w: UnsafePointer<Double>, vocab: Int, before: (Int32, Int32) -> Bool
    ) {
        candidates.removeAll(keepingCapacity: true)
        candidates.reserveCapacity(k)
        for j in 0..<k { candidates.append(Int32(j)) }
        candidates.withUnsafeMutableBufferPointer { h in
            // Sift down from i in a heap ordered so that every parent comes after its children.
            func sift(_ start: Int) {
                var i = start
                while true {
                    let l = 2 * i + 1, r = l + 1
                    var m = i
                    if l < k, before(h[m], h[l]) { m = l }
                    if r < k, before(h[m], h[r]) { m = r }
                    if m == i { return }
                    h.swapAt(i, m)
                    i = m
                }
            }
            for i in stride(from: k / 2 - 1, through: 0, by: -1) { sift(i) }
            for j in k..<vocab where before(Int32(j), h[0]) {
                h[0] = Int32(j)
                sift(0)
            }
        }
    }
}
