import XCTest
import QSTFormat
@testable import QSTEngine
import QSTTestSupport

/// Padding, KV cache, greedy generation and config validation on the tiny models.
final class EngineConsistencyTests: XCTestCase {
    let seqs: [[Int32]] = [[1, 5, 9, 200, 31, 77, 150, 4, 18], [1, 42, 43], [1, 260, 12, 99, 101, 7]]

    func testPaddedBatchEqualsSingleRuns() throws {
        for name in ["tiny-llama", "tiny-qwen2"] {
            let model = try FrozenModel(
                path: try Reference.tiny(name), options: EngineOptions(matmulPath: .dequantizeSGEMM))
            let batch = TokenBatch(sequences: seqs, pad: 0)
            let batched = try model.logits(batch).array
            let V = model.vocabSize
            for (b, s) in seqs.enumerated() {
                let single = try model.logits(TokenBatch(sequences: [s])).array
                let fromBatch = Array(batched[(b * batch.seqLen * V)..<((b * batch.seqLen + s.count) * V)])
                XCTAssertLessThanOrEqual(
                    relativeFrobenius(fromBatch.map(Double.init), single.map(Double.init)), 1e-6,
                    "\(name) sequence \(b)")
            }
        }
    }

    /// Prefill of a prefix then one token at a time gives the logits of one full forward.
    func testKVCacheIncrementalEqualsFullForward() throws {
        for name in ["tiny-llama3", "tiny-mistral"] {
            let model = try FrozenModel(
                path: try Reference.tiny(name), options: EngineOptions(matmulPath: .dequantizeSGEMM))
            let s = seqs[0], V = model.vocabSize, d = model.hiddenSize
            let full = try model.logits(TokenBatch(sequences: [s])).array
            let cache = model.makeCache(batch: 1, capacity: s.count)
            var incremental: [Float] = []
            let h0 = try model.forward(ids: Array(s[0..<4]), batch: 1, newTokens: 4, cache: cache)
            incremental += model.logits(hidden: h0.constPointer, rows: 4).array
            for t in 4..<s.count {
                let h = try model.forward(ids: [s[t]], batch: 1, newTokens: 1, cache: cache)
                incremental += model.logits(hidden: h.constPointer, rows: 1).array
            }
            XCTAssertEqual(incremental.count, s.count * V)
            XCTAssertLessThanOrEqual(relativeFrobenius(incremental.map(Double.init), full.map(Double.init)), 1e-5, name)
            XCTAssertEqual(cache.length, s.count)
            _ = d
        }
    }

    /// The same through the kernels: one-token steps take the GEMV loops with q/k/v and gate/up fused into one
    /// parallel job each (`FusedLinears`), the full forward the GEMM loops; on NF4 and BF16 weights.
    func testKernelDecodeStepsWithFusedLinearsEqualFullForward() throws {
        let folder = try Reference.tiny("tiny-llama")
        let qst4 = Reference.tempPath("fused.qst4")
        defer { try? FileManager.default.removeItem(atPath: qst4) }
        try buildContainer(from: folder, to: qst4)
        for path in [qst4, try Reference.tiny("tiny-llama-bf16")] {
            let model = try FrozenModel(path: path, options: EngineOptions(matmulPath: .kernelsExact))
            let s = seqs[0], V = model.vocabSize
            let full = try model.logits(TokenBatch(sequences: [s])).array
            let cache = model.makeCache(batch: 1, capacity: s.count)
            var incremental: [Float] = []
            for t in 0..<s.count {
                let h = try model.forward(ids: [s[t]], batch: 1, newTokens: 1, cache: cache)
                incremental += model.logits(hidden: h.constPointer, rows: 1).array
            }
            XCTAssertEqual(incremental.count, s.count * V)
            XCTAssertLessThanOrEqual(relativeFrobenius(incremental.map(Double.init), full.map(Double.init)), 1e-5, path)
        }
    }

    /// A batched cache with sequences of different lengths: each row matches its own single run.
    func testBatchedKVCacheWithPaddingMatchesSingleSequences() throws {
        let model = try FrozenModel(
            path: try Reference.tiny("tiny-llama"), options: EngineOptions(matmulPath: .dequantizeSGEMM))
        let a: [Int32] = [1, 5, 9, 200], b: [Int32] = [1, 42]
        let cache = model.makeCache(batch: 2, capacity: 6)
        _ = try model.forward(
            ids: a + b + [0, 0], batch: 2, newTokens: 4, valid: [1, 1, 1, 1, 1, 1, 0, 0], cache: cache)
        let h = try model.forward(ids: [7, 8], batch: 2, newTokens: 1, cache: cache)
        let stepLogits = model.logits(hidden: h.constPointer, rows: 2).array
        let V = model.vocabSize
        for (i, s) in [a + [7], b + [8]].enumerated() {
            let single = try model.logits(TokenBatch(sequences: [s])).array
            let last = Array(single[((s.count - 1) * V)..<(s.count * V)])
            XCTAssertLessThanOrEqual(
                relativeFrobenius(
                    Array(stepLogits[(i * V)..<((i + 1) * V)]).map(Double.init),
                    last.map(Double.init)), 1e-5, "row \(i)")
        }
    }

    func testGreedyGenerationMatchesReference() throws {
        // Not tiny-llama: with tied, small embeddings it just repeats a token.
        for name in ["tiny-qwen2", "tiny-llama3", "tiny-mistral"] {
            let folder = try Reference.tiny(name)
            let prompt: [Int32] = [1, 17, 42, 255, 7]
            let expected = try Reference.greedy(model: folder, prompt: prompt, count: 10)
            let model = try FrozenModel(path: folder, options: EngineOptions(matmulPath: .dequantizeSGEMM))
            let got = try Generator(model: model).generate(prompt: prompt, maxTokens: 10).tokens
            XCTAssertEqual(got, expected, name)
            XCTAssertGreaterThan(Set(expected).count, 2, "reference continuation should not be one repeated token")
        }
    }

    func testSamplingIsSeededAndRespectsTopP() throws {
        let logits: [Float] = [2, 1.9, -5, -6, 0.5]
        // top-p 0.5 keeps only the two most likely tokens (their mass passes 0.5 after the second).
        var sampler = Sampler(SamplingOptions(temperature: 1, topP: 0.5, seed: 7))
        var seen = Set<Int32>()
        for _ in 0..<200 {
            seen.insert(logits.withUnsafeBufferPointer { sampler.next(logits: $0.baseAddress!, vocab: 5) })
        }
        XCTAssertEqual(seen, [0, 1])
        var s1 = Sampler(SamplingOptions(temperature: 1, topP: 1, seed: 3)),
            s2 = Sampler(SamplingOptions(temperature: 1, topP: 1, seed: 3))
        let r1 = (0..<50).map { _ in logits.withUnsafeBufferPointer { s1.next(logits: $0.baseAddress!, vocab: 5) } }
        let r2 = (0..<50).map { _ in logits.withUnsafeBufferPointer { s2.next(logits: $0.baseAddress!, vocab: 5) } }
        XCTAssertEqual(r1, r2)
        XCTAssertGreaterThan(Set(r1).count, 2)
    }

    func testUnsupportedConfigValuesAreNamed() throws {
        let base: [String: Any] = [
            "model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 300,
        ]
        func message(_ over: [String: Any]) -> String {
            let data = try! JSONSerialization.data(withJSONObject: base.merging(over) { $1 })
            do { _ = try ModelConfig.parse(data, origin: "x/config.json"); return "" } catch { return "\(error)" }
        }
        XCTAssertEqual(message([:]), "")
        XCTAssertTrue(message(["model_type": "gpt2"]).contains("model_type 'gpt2'"))
        XCTAssertTrue(message(["rope_scaling": ["type": "yarn", "factor": 2.0]]).contains("rope_scaling type 'yarn'"))
        XCTAssertTrue(message(["hidden_act": "gelu"]).contains("hidden_act 'gelu'"))
        XCTAssertTrue(message(["num_key_value_heads": 3]).contains("num_key_value_heads"))
        XCTAssertTrue(message(["model_type": "qwen2", "use_sliding_window": true]).contains("use_sliding_window"))
        XCTAssertTrue(message(["model_type": "qwen2", "use_sliding_window": true]).contains("max_window_layers"))
        XCTAssertTrue(
            message(["model_type": "mistral", "sliding_window": 0]).contains("sliding_window must be positive"))
        XCTAssertEqual(message(["model_type": "mistral", "sliding_window": NSNull()]), "", "null: no window")
        XCTAssertEqual(
            try ModelConfig.parse(
                try JSONSerialization.data(
                    withJSONObject: base.merging(
                        ["model_type": "mistral", "sliding_window": 16]) { $1 }), origin: "c"
            ).attentionWindow, 16)
        XCTAssertNil(
            try ModelConfig.parse(
                try JSONSerialization.data(
                    withJSONObject: base.merging(
                        ["sliding_window": 16]) { $1 }), origin: "c"
            ).attentionWindow, "only mistral windows")
        XCTAssertTrue(message(["hidden_size": "big"]).contains("hidden_size"))
        let eos = try ModelConfig.parse(
            try JSONSerialization.data(withJSONObject: base.merging(["eos_token_id": [2, 3]]) { $1 }), origin: "c")
        XCTAssertEqual(eos.eosTokenIDs, [2, 3])
    }

    func testBadTokenIDIsAnErrorNotACrash() throws {
        let model = try FrozenModel(
            path: try Reference.tiny("tiny-llama"), options: EngineOptions(matmulPath: .dequantizeSGEMM))
        XCTAssertThrowsError(try model.logits(TokenBatch(sequences: [[1, 300]]))) { e in
            XCTAssertTrue("\(e)".contains("300"))
        }
    }

    /// With a tiny resident budget every layer is dropped after use; results are unchanged.
    func testResidentBudgetGivesSameLogits() throws {
        let folder = try Reference.tiny("tiny-llama")
        let qst4 = Reference.tempPath("budget.qst4")
        defer { try? FileManager.default.removeItem(atPath: qst4) }
        try buildContainer(from: folder, to: qst4)
        let a = try FrozenModel(path: qst4, options: EngineOptions(matmulPath: .kernelsExact))
        let b = try FrozenModel(path: qst4, options: EngineOptions(matmulPath: .kernelsExact, residentBudgetMB: 0))
        XCTAssertTrue(b.dropPages)
        XCTAssertFalse(a.dropPages)
        let batch = TokenBatch(sequences: seqs)
        XCTAssertEqual(try a.logits(batch).array, try b.logits(batch).array)
    }
}
