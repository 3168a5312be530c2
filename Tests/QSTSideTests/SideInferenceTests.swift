import Foundation
import QSTEngine
import QSTFormat
import QSTNN
import XCTest
@testable import QSTSide
import QSTTestSupport

/// Side network inference beside a real (tiny, NF4) frozen model: against the independent float64 NumPy
/// reference, against the training forward, cached against uncached, several adapters against one each.
final class SideInferenceTests: XCTestCase {
    let exact = EngineOptions(matmulPath: .dequantizeSGEMM)
    let sequences: [[Int32]] = [[1, 17, 42, 99, 5, 250, 7, 3, 64], [1, 200, 13, 8, 111]]

    func testLogitsMatchFloat64ReferenceOnTinyNF4() throws {
        let container = try ExportFixtures.tinyContainer()
        let base = try FrozenModel(path: container, options: exact)
        for kind in [DownsampleKind.adapter, .linear, .avgpool] {
            let side = try ExportFixtures.sideWeights(for: base, r: kind == .avgpool ? 4 : 2, kind: kind)
            let dir = try ExportFixtures.exportAdapter(side, base: base, name: "adapter")
            let batch = TokenBatch(sequences: sequences)
            let swift = try TunedModel(base: base, sides: [side]).logits(batch)[0].array.map(Double.init)
            let ref = try ExportFixtures.referenceLogits(container: container, adapter: dir, sequences: sequences)
            let V = base.vocabSize
            let err = relativeFrobenius(
                ExportFixtures.validRows(swift, lengths: batch.lengths, seqLen: batch.seqLen, vocab: V),
                ExportFixtures.validRows(ref, lengths: batch.lengths, seqLen: batch.seqLen, vocab: V))
            XCTAssertLessThan(err, 1e-5, "\(kind) downsampler: tuned logits vs float64 reference")
            // The side network must matter, or the comparison would only test the base.
            let plain = try base.logits(batch).array.map(Double.init)
            let sideEffect = relativeFrobenius(
                ExportFixtures.validRows(plain, lengths: batch.lengths, seqLen: batch.seqLen, vocab: V),
                ExportFixtures.validRows(ref, lengths: batch.lengths, seqLen: batch.seqLen, vocab: V))
            XCTAssertGreaterThan(sideEffect, 1e-2, "\(kind): the side network changes the logits")
        }
    }

    /// `--matmul auto` packs side networks in bfloat16: half the bytes, and the tuned logits stay within the
    /// weights' rounding (2⁻⁹ relative each) of the float64 reference, while they do differ from float32's.
    func testBFloat16PackStaysNearTheReference() throws {
        let container = try ExportFixtures.tinyContainer()
        let base = try FrozenModel(path: container, options: exact)
        let side = try ExportFixtures.sideWeights(for: base, r: 2, kind: .adapter)
        let dir = try ExportFixtures.exportAdapter(side, base: base, name: "adapter-bf16")
        let batch = TokenBatch(sequences: sequences), V = base.vocabSize
        let ref = try ExportFixtures.referenceLogits(container: container, adapter: dir, sequences: sequences)
        func rows(_ x: [Double]) -> [Double] {
            ExportFixtures.validRows(x, lengths: batch.lengths, seqLen: batch.seqLen, vocab: V)
        }
        let f32 = try TunedModel(base: base, sides: [side], precision: .float32)
        let bf16 = try TunedModel(base: base, sides: [side], precision: .bfloat16)
        XCTAssertEqual(bf16.runners[0].pack.precision, .bfloat16)
        XCTAssertEqual(bf16.runners[0].pack.bytes * 2, f32.runners[0].pack.bytes, "bfloat16 halves the pack")
        let a = rows(try f32.logits(batch)[0].array.map(Double.init))
        let b = rows(try bf16.logits(batch)[0].array.map(Double.init))
        let errF32 = relativeFrobenius(a, rows(ref)), errBF16 = relativeFrobenius(b, rows(ref))
        XCTAssertLessThan(errF32, 1e-5)
        XCTAssertLessThan(errBF16, 4e-3, "bfloat16 side weights: logits within their rounding of float64")
        XCTAssertGreaterThan(relativeFrobenius(a, b), 1e-6, "the bfloat16 pack is the one used")
        // The precision follows the base's matmul path unless given.
        let auto = try FrozenModel(path: container, options: EngineOptions(matmulPath: .kernelsAuto))
        XCTAssertEqual(try TunedModel(base: auto, sides: [side]).runners[0].pack.precision, .bfloat16)
        XCTAssertEqual(try TunedModel(base: base, sides: [side]).runners[0].pack.precision, .float32)
        let kernelsExact = try FrozenModel(path: container, options: EngineOptions(matmulPath: .kernelsExact))
        XCTAssertEqual(try TunedModel(base: kernelsExact, sides: [side]).runners[0].pack.precision, .float32)
    }

    func testCachedDecodingMatchesFullForward() throws {
        let base = try FrozenModel(path: try ExportFixtures.tinyContainer(), options: exact)
        let model = try TunedModel(base: base, sides: [try ExportFixtures.sideWeights(for: base)])
        let ids = sequences[0], d = base.hiddenSize
        let full = try model.forward(ids: ids, batch: 1, newTokens: ids.count).heads[0]
        let cache = try model.makeCache(batch: 1, capacity: ids.count, routing: .shared)
        var rows: [Float] = []
        // A 4-token prefill, then one token at a time.
        let first = try model.forward(ids: Array(ids[0..<4]), batch: 1, newTokens: 4, cache: cache).heads[0]
        rows += first.array
        for t in 4..<ids.count {
            rows += try model.forward(ids: [ids[t]], batch: 1, newTokens: 1, cache: cache).heads[0].array
        }
        XCTAssertEqual(rows.count, ids.count * d)
        let err = relativeFrobenius(rows.map(Double.init), full.array.map(Double.init))
        XCTAssertLessThan(err, 1e-5, "incremental head inputs vs one full forward")
        XCTAssertEqual(cache.sides[0].length, ids.count)
        XCTAssertEqual(cache.sides[0].positions, [ids.count])
    }

    /// `qst-eval choice` keeps a subject's shots in the caches: after `truncate(to:)` a new ending continues the
    /// kept prefix, base and side alike, as the whole new sequence's forward (the RoPE positions restart at the cut).
    func testTruncatedCacheContinuesAsTheWholeSequence() throws {
        let base = try FrozenModel(path: try ExportFixtures.tinyContainer(), options: exact)
        let model = try TunedModel(base: base, sides: [try ExportFixtures.sideWeights(for: base)])
        let first = sequences[0], ending: [Int32] = [33, 8, 150], d = base.hiddenSize
        let cache = try model.makeCache(batch: 1, capacity: 16, routing: .shared, float32: true)
        _ = try model.forward(ids: first, batch: 1, newTokens: first.count, cache: cache)
        try cache.truncate(to: 5)
        XCTAssertEqual(cache.base.positions, [5])
        XCTAssertEqual(cache.sides[0].positions, [5])
        let continued = try model.forward(ids: ending, batch: 1, newTokens: ending.count, cache: cache).heads[0]
        let whole = Array(first.prefix(5)) + ending
        let full = try model.forward(ids: whole, batch: 1, newTokens: whole.count).heads[0].array
        let err = relativeFrobenius(continued.array.map(Double.init), full[(5 * d)...].map(Double.init))
        XCTAssertLessThan(err, 1e-5, "continued after the cut vs the whole sequence")
        XCTAssertEqual(cache.sides[0].length, whole.count)
        XCTAssertThrowsError(try cache.truncate(to: whole.count + 1))
    }

    func testInferenceAgreesWithTrainingForward() throws {
        let base = try FrozenModel(path: try ExportFixtures.tinyContainer(), options: exact)
        let side = try ExportFixtures.sideWeights(for: base)
        let batch = TokenBatch(sequences: sequences)
        let training = try SideModel(weights: side, backbone: base).outputHidden(batch)
        let valid = Attention.maskFromLengths(batch.lengths, seqLen: batch.seqLen)
        let inference = try TunedModel(base: base, sides: [side])
            .forward(ids: batch.ids, batch: batch.batch, newTokens: batch.seqLen, valid: valid).heads[0]
        let d = base.hiddenSize
        let a = ExportFixtures.validRows(
            inference.array.map(Double.init), lengths: batch.lengths, seqLen: batch.seqLen, vocab: d)
        let b = ExportFixtures.validRows(
            training.array.map(Double.init), lengths: batch.lengths, seqLen: batch.seqLen, vocab: d)
        XCTAssertLessThan(relativeFrobenius(a, b), 1e-5)
    }

    func testSeveralAdaptersInOneBatchMatchEachAlone() throws {
        let base = try FrozenModel(path: try ExportFixtures.tinyContainer(), options: exact)
        let a = try ExportFixtures.sideWeights(for: base, seed: 1),
            b = try ExportFixtures.sideWeights(for: base, seed: 2)
        let prompt: [Int32] = [1, 17, 42, 99]
        let sampling = SamplingOptions(temperature: 0.8, topP: 0.9, seed: 4)
        let together = try TunedGenerator(model: try TunedModel(base: base, sides: [a, b]))
            .generate(prompt: prompt, maxTokens: 12, sampling: sampling, stopTokens: [2])
        let aloneA = try TunedGenerator(model: try TunedModel(base: base, sides: [a]))
            .generate(prompt: prompt, maxTokens: 12, sampling: sampling, stopTokens: [2])
        let aloneB = try TunedGenerator(model: try TunedModel(base: base, sides: [b]))
            .generate(prompt: prompt, maxTokens: 12, sampling: sampling, stopTokens: [2])
        XCTAssertEqual(together[0].tokens, aloneA[0].tokens)
        XCTAssertEqual(together[1].tokens, aloneB[0].tokens)
        XCTAssertNotEqual(aloneA[0].tokens, aloneB[0].tokens, "different adapters should continue differently")
    }

    func testGreedyTunedGenerationMatchesArgmaxOfFullLogits() throws {
        let base = try FrozenModel(path: try ExportFixtures.tinyContainer(), options: exact)
        let model = try TunedModel(base: base, sides: [try ExportFixtures.sideWeights(for: base)])
        var seq: [Int32] = [1, 17, 42]
        let generated = try TunedGenerator(model: model).generate(prompt: seq, maxTokens: 6)[0].tokens
        // Recompute each step from scratch (no cache) and take the argmax.
        var expected: [Int32] = []
        for _ in 0..<6 {
            let logits = try model.logits(TokenBatch(sequences: [seq]))[0]
            let V = base.vocabSize
            let last = Array(logits.array[((seq.count - 1) * V)..<(seq.count * V)])
            let next = Int32(last.indices.max { last[$0] < last[$1] }!)
            expected.append(next)
            seq.append(next)
        }
        XCTAssertEqual(generated, expected)
    }
}
