import XCTest
import QSTFormat
@testable import QSTEngine
import QSTTestSupport

/// The float16 decoding cache (`KVCachePrecision.float16`, `--matmul auto`): which caches get it, what it saves,
/// and how far its rounding moves the logits. The tiny models' weights are F32, which every path multiplies in
/// float32, so between `auto` and `exact` only the cache differs.
final class KVCacheHalfTests: XCTestCase {
    let prompt: [Int32] = [1, 5, 9, 200, 31, 77, 150, 4, 18, 99, 12, 260, 7, 42, 43, 101, 5, 9, 33]

    func testPrecisionFollowsThePathAndHalvesTheBytes() throws {
        let llama = try Reference.tiny("tiny-llama3")
        let auto = try FrozenModel(path: llama, options: EngineOptions(matmulPath: .kernelsAuto))
        let exact = try FrozenModel(path: llama, options: EngineOptions(matmulPath: .kernelsExact))
        let sgemm = try FrozenModel(path: llama, options: EngineOptions(matmulPath: .dequantizeSGEMM))
        let half = auto.makeCache(batch: 2, capacity: 40), full = exact.makeCache(batch: 2, capacity: 40)
        XCTAssertEqual(half.precision, .float16)
        XCTAssertEqual(full.precision, .float32)
        XCTAssertEqual(sgemm.makeCache(batch: 2, capacity: 40).precision, .float32)
        // Values: half the bytes; keys: tiles of 16 tokens, so 40 rows take 48 rows' room.
        let kv = auto.config.kvDim, layers = auto.layerCount
        XCTAssertEqual(half.bytes, layers * 2 * 2 * (48 + 40) * kv + 2 * 40)
        XCTAssertEqual(full.bytes, layers * 2 * 2 * 40 * kv * 4 + 2 * 40)
        // A sliding-window ring and OPT keep float32.
        let mistral = try FrozenModel(
            path: try Reference.tiny("tiny-mistral-window"), options: EngineOptions(matmulPath: .kernelsAuto))
        let window = try XCTUnwrap(mistral.config.attentionWindow)
        XCTAssertEqual(mistral.makeCache(batch: 1, capacity: window + 10).precision, .float32)
        XCTAssertEqual(mistral.makeCache(batch: 1, capacity: window).precision, .float16)
        let opt = try FrozenModel(
            path: try Reference.tiny("tiny-opt"), options: EngineOptions(matmulPath: .kernelsAuto))
        XCTAssertEqual(opt.makeCache(batch: 1, capacity: 8).precision, .float32)
    }

    /// Prefill (the float32 products over the widened cache) then one token at a time (the decode kernel): within
    /// the rounding of keys and values to binary16 of the full float32 forward, and the same bits as the same
    /// model with a float32 cache would give only up to that rounding.
    func testIncrementalDecodingStaysNearTheFullForward() throws {
        for name in ["tiny-llama3", "tiny-qwen2", "tiny-llama"] {
            let folder = try Reference.tiny(name)
            let auto = try FrozenModel(path: folder, options: EngineOptions(matmulPath: .kernelsAuto))
            let exact = try FrozenModel(path: folder, options: EngineOptions(matmulPath: .kernelsExact))
            let s = prompt, V = auto.vocabSize
            let full = try exact.logits(TokenBatch(sequences: [s])).array.map(Double.init)
            func incremental(_ cache: KVCache) throws -> [Double] {
                var out: [Float] = []
                let h0 = try auto.forward(ids: Array(s[0..<5]), batch: 1, newTokens: 5, cache: cache)
                out += auto.logits(hidden: h0.constPointer, rows: 5).array
                for t in 5..<s.count {
                    let h = try auto.forward(ids: [s[t]], batch: 1, newTokens: 1, cache: cache)
                    out += auto.logits(hidden: h.constPointer, rows: 1).array
                }
                return out.map(Double.init)
            }
            let halfCache = auto.makeCache(batch: 1, capacity: s.count)
            XCTAssertEqual(halfCache.precision, .float16)
            let half = try incremental(halfCache)
            let float = try incremental(
                KVCache(
                    layers: auto.layerCount, batch: 1, capacity: s.count, kvDim: auto.config.kvDim,
                    headDim: auto.config.resolvedHeadDim))
            XCTAssertEqual(half.count, s.count * V)
            let halfError = relativeFrobenius(half, full), floatError = relativeFrobenius(float, full)
            XCTAssertLessThanOrEqual(floatError, 1e-5, "\(name): float32 cache")
            // Keys and values rounded to 11 significant bits (relative error ≤ 2⁻¹¹ each).
            XCTAssertLessThanOrEqual(halfError, 1e-3, "\(name): float16 cache")
            XCTAssertGreaterThan(halfError, floatError, "\(name): the float16 cache is in use")
        }
    }

    /// A batched float16 cache with padding: each row's decode step matches that sequence decoded alone. On an NF4
    /// container, as the server and the generator run it: its linears are the kernels', which give a row the same
    /// bits whatever the row count. (An F32 model's linears are OpenBLAS sgemm calls, whose Haswell kernels round a
    /// row differently in an 8-row product than in a 2-row one; the float16 keys then turn such a last-bit
    /// difference into a 2⁻¹¹ one: 1.8e-5 on the logits on an AVX2-only AMD EPYC.)
    func testBatchedHalfCacheWithPaddingMatchesSingleSequences() throws {
        let qst4 = Reference.tempPath("half-batched.qst4")
        defer { try? FileManager.default.removeItem(atPath: qst4) }
        try buildContainer(from: try Reference.tiny("tiny-llama3"), to: qst4)
        let model = try FrozenModel(path: qst4, options: EngineOptions(matmulPath: .kernelsAuto))
        let a: [Int32] = [1, 5, 9, 200], b: [Int32] = [1, 42]
        let cache = model.makeCache(batch: 2, capacity: 6)
        XCTAssertEqual(cache.precision, .float16)
        _ = try model.forward(
            ids: a + b + [0, 0], batch: 2, newTokens: 4, valid: [1, 1, 1, 1, 1, 1, 0, 0], cache: cache)
        let h = try model.forward(ids: [7, 8], batch: 2, newTokens: 1, cache: cache)
        let step = model.logits(hidden: h.constPointer, rows: 2).array
        let V = model.vocabSize
        for (i, s) in [a, b].enumerated() {
            let alone = model.makeCache(batch: 1, capacity: 6)
            _ = try model.forward(ids: s, batch: 1, newTokens: s.count, cache: alone)
            let h1 = try model.forward(ids: [[7, 8][i]], batch: 1, newTokens: 1, cache: alone)
            let single = model.logits(hidden: h1.constPointer, rows: 1).array
            XCTAssertLessThanOrEqual(
                relativeFrobenius(
                    Array(step[(i * V)..<((i + 1) * V)]).map(Double.init), single.map(Double.init)), 1e-5, "row \(i)")
        }
    }
}
