import XCTest
import QSTFormat
@testable import QSTEngine
import QSTTestSupport

/// Mistral's sliding window on `tiny-mistral-window` (sliding_window 8, 2 layers) with sequences of 40
/// tokens, against the NumPy float64 reference (Scripts/reference_forward.py applies the same window).
final class SlidingWindowTests: XCTestCase {
    static let window = 8

    static func tokens(_ n: Int, seed: UInt64) -> [Int32] {
        var s = seed
        return (0..<n).map { _ in
            s = s &* 6364136223846793005 &+ 1442695040888963407; return Int32((s >> 33) % 300)
        }
    }

    /// Prefill without a cache: 40- and 29-token sequences (one padded) through every exact path.
    func testPrefillLogitsPastTheWindowMatchReference() throws {
        let folder = try Reference.tiny("tiny-mistral-window")
        let seqs = [Self.tokens(40, seed: 1), Self.tokens(29, seed: 2)]
        let ref = try Reference.logits(model: folder, sequences: seqs)
        let refRows = validRows(ref, lengths: seqs.map(\.count))
        // The window really bites: full causal attention gives clearly different logits.
        let full = try Reference.logits(model: folder, sequences: seqs, fullAttention: true)
        XCTAssertGreaterThan(relativeFrobenius(validRows(full, lengths: seqs.map(\.count)), refRows), 1e-2)
        for path in [MatmulPath.dequantizeSGEMM, .kernelsExact] {
            let model = try FrozenModel(path: folder, options: EngineOptions(matmulPath: path))
            XCTAssertEqual(model.config.attentionWindow, Self.window)
            let batch = TokenBatch(sequences: seqs)
            let logits = try model.logits(batch).array
            let err = relativeFrobenius(
                validRows(logits, lengths: batch.lengths, seqLen: batch.seqLen, vocab: model.vocabSize),
                refRows)
            XCTAssertLessThanOrEqual(err, 1e-5, "\(path): relative Frobenius error")
        }
    }

    /// The same 40 tokens fed through a cache in chunks of 1, 3, 7, 8 and 13 tokens (smaller and larger
    /// than the 7-row ring, wrapping it many times): every position's logits match the reference, and
    /// the cache never holds more than window − 1 rows.
    func testChunkedDecodeThroughRingCacheMatchesReference() throws {
        let folder = try Reference.tiny("tiny-mistral-window")
        let seq = Self.tokens(40, seed: 3)
        let ref = try Reference.logits(model: folder, sequences: [seq])
        let refRows = validRows(ref, lengths: [seq.count])
        let model = try FrozenModel(path: folder, options: EngineOptions(matmulPath: .dequantizeSGEMM))
        for chunk in [1, 3, 7, 8, 13] {
            let cache = model.makeCache(batch: 1, capacity: 400)
            XCTAssertEqual(cache.rows, Self.window - 1)
            XCTAssertEqual(
                cache.bytes, model.makeCache(batch: 1, capacity: 100_000).bytes, "memory grows with capacity")
            var mine: [Double] = []
            var i = 0
            while i < seq.count {
                let n = min(chunk, seq.count - i)
                let h = try model.forward(ids: Array(seq[i..<i + n]), batch: 1, newTokens: n, cache: cache)
                mine += model.logits(hidden: h.constPointer, rows: n).array.map(Double.init)
                i += n
            }
            XCTAssertEqual(cache.length, seq.count)
            XCTAssertLessThanOrEqual(relativeFrobenius(mine, refRows), 1e-5, "chunks of \(chunk)")
        }
    }

    /// Greedy generation from a 5-token prompt for 30 tokens (well past the window) and from a 20-token
    /// prompt: the same ids as the reference's greedy decoding.
    func testGreedyDecodePastTheWindowMatchesReference() throws {
        let folder = try Reference.tiny("tiny-mistral-window")
        let prompts = [Self.tokens(5, seed: 4), Self.tokens(20, seed: 5)]
        let expected = try Reference.greedyMany(model: folder, prompts: prompts, count: 30)
        let model = try FrozenModel(path: folder, options: EngineOptions(matmulPath: .dequantizeSGEMM))
        for (prompt, want) in zip(prompts, expected) {
            let result = try Generator(model: model).generate(prompt: prompt, maxTokens: 30)
            XCTAssertEqual(result.tokens, want, "prompt of \(prompt.count)")
            XCTAssertEqual(result.stopReason, "max_tokens")
        }
    }

    /// Ring slots map back to the rows they hold; empty and overwritten slots to nil.
    func testRingRowArithmetic() {
        XCTAssertNil(WindowedAttention.ringRow(slot: 0, pastLength: 0, ringRows: 7))
        XCTAssertEqual(WindowedAttention.ringRow(slot: 2, pastLength: 3, ringRows: 7), 2)
        XCTAssertNil(WindowedAttention.ringRow(slot: 3, pastLength: 3, ringRows: 7))
        // After 17 rows in a ring of 7: slots hold rows 14, 15, 16, 10, 11, 12, 13.
        XCTAssertEqual(
            (0..<7).map { WindowedAttention.ringRow(slot: $0, pastLength: 17, ringRows: 7) },
            [14, 15, 16, 10, 11, 12, 13])
    }

    /// A cache that fits inside the window stays a plain cache (the unwindowed fast path).
    func testShortCacheIsPlain() throws {
        let model = try FrozenModel(path: try Reference.tiny("tiny-mistral-window"))
        let cache = model.makeCache(batch: 2, capacity: Self.window)
        XCTAssertNil(cache.window)
        XCTAssertEqual(cache.rows, Self.window)
    }
}
