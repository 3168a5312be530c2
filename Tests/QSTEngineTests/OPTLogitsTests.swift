import XCTest
import QSTFormat
@testable import QSTEngine
import QSTTestSupport

/// OPT checkpoints (Scripts/make-tiny-models: pre- and post-LayerNorm, project_in/out, no biases and
/// non-affine norms, tied and untied heads) against the NumPy float64 reference (qst_py/opt_reference.py).
final class OPTLogitsTests: XCTestCase {
    static let sequences: [[Int32]] = [[2, 17, 42, 255, 7, 99, 3, 128, 64, 5, 200, 11], [2, 250, 33, 8, 190, 77, 1]]
    static let models = ["tiny-opt", "tiny-opt-350m", "tiny-opt-nobias"]

    private func error(_ model: FrozenModel, folder: String, sequences: [[Int32]]) throws -> (Double, Double) {
        let ref = try Reference.logits(model: folder, sequences: sequences)
        let batch = TokenBatch(sequences: sequences)
        let logits = try model.logits(batch).array
        let refRows = validRows(ref, lengths: batch.lengths)
        let err = relativeFrobenius(
            validRows(logits, lengths: batch.lengths, seqLen: batch.seqLen, vocab: model.vocabSize),
            refRows)
        return (err, refRows.map(abs).max() ?? 0)
    }

    func testLogitsMatchReferenceOnEveryShape() throws {
        for name in Self.models {
            let folder = try Reference.tiny(name)
            for path in [MatmulPath.dequantizeSGEMM, .kernelsExact] {
                let model = try FrozenModel(path: folder, options: EngineOptions(matmulPath: path))
                XCTAssertEqual(model.config.modelType, "opt")
                let (err, spread) = try error(model, folder: folder, sequences: Self.sequences)
                print("OPT logits \(name) via \(path.rawValue): relative Frobenius error \(err)")
                XCTAssertLessThanOrEqual(err, 1e-4, "\(name) via \(path): relative Frobenius error")
                XCTAssertGreaterThan(spread, 0.1, "\(name): reference logits are not trivial")
            }
        }
    }

    /// The 350m-like shape: the head reads word_embed_proj_dim (32), not the hidden size (64).
    func testProjectedShapeHeadWidth() throws {
        let model = try FrozenModel(path: try Reference.tiny("tiny-opt-350m"))
        XCTAssertEqual(model.hiddenSize, 64)
        XCTAssertEqual(model.headInputSize, 32)
        XCTAssertFalse(model.config.optFinalNorm)
    }

    /// Hidden states handed to the side network: the input to layer 0 (projected embeddings plus positions),
    /// then every layer's output, as the reference computes them.
    func testHiddenStatesMatchReference() throws {
        let folder = try Reference.tiny("tiny-opt-350m")
        let ref = try Reference.hidden(model: folder, sequences: Self.sequences)
        let model = try FrozenModel(path: folder, options: EngineOptions(matmulPath: .dequantizeSGEMM))
        let batch = TokenBatch(sequences: Self.sequences)
        let d = model.hiddenSize, T = batch.seqLen
        var visited: [Int] = []
        _ = try model.forwardHiddenStates(batch) { i, h in
            visited.append(i)
            var mine: [Double] = [], theirs: [Double] = []
            for (b, len) in batch.lengths.enumerated() {
                for t in 0..<len {
                    mine += (0..<d).map { Double(h[(b * T + t) * d + $0]) }
                    let base = ((i * batch.batch + b) * ref.shape[2] + t) * d
                    theirs += ref.values[base..<base + d]
                }
            }
            XCTAssertLessThanOrEqual(relativeFrobenius(mine, theirs), 1e-5, "hidden state \(i)")
        }
        XCTAssertEqual(visited, Array(0...3))
    }

    /// Incremental decoding with the KV cache (positions continue at the cache's count) gives the
    /// reference's greedy continuation.
    func testGreedyGenerationMatchesReference() throws {
        for name in ["tiny-opt-350m", "tiny-opt-nobias"] {
            let folder = try Reference.tiny(name)
            let model = try FrozenModel(path: folder, options: EngineOptions(matmulPath: .kernelsExact))
            let prompt: [Int32] = [2, 17, 42, 255, 7]
            let expected = try Reference.greedy(model: folder, prompt: prompt, count: 8)
            let cache = model.makeCache(batch: 1, capacity: 32)
            var h = try model.forward(ids: prompt, batch: 1, newTokens: prompt.count, cache: cache)
            var got: [Int32] = []
            var last = prompt.count - 1
            for _ in 0..<8 {
                let logits = model.logits(hidden: h.constPointer + last * model.headInputSize, rows: 1).array
                let next = Int32(logits.indices.max { logits[$0] < logits[$1] }!)
                got.append(next)
                h = try model.forward(ids: [next], batch: 1, newTokens: 1, cache: cache)
                last = 0
            }
            XCTAssertEqual(got, expected, name)
        }
    }

    /// NF4 container of the projected shape: project_in/out are quantized, positions kept; the engine matches
    /// the reference run on the container's decoded weights.
    func testNF4ContainerMatchesReferenceOnDequantizedWeights() throws {
        let folder = try Reference.tiny("tiny-opt-350m")
        let qst4 = Reference.tempPath("opt350.qst4"), decoded = Reference.tempPath("opt350-dq.safetensors")
        defer { for f in [qst4, decoded] { try? FileManager.default.removeItem(atPath: f) } }
        try buildContainer(from: folder, to: qst4)
        let container = try QST4Container(path: qst4)
        XCTAssertEqual(try container.entry("model.decoder.project_in.weight").dtype, .nf4)
        XCTAssertEqual(try container.entry("model.decoder.layers.0.fc1.weight").dtype, .nf4)
        XCTAssertEqual(try container.entry("model.decoder.embed_positions.weight").dtype, .bf16)
        XCTAssertEqual(try container.entry("model.decoder.layers.0.fc1.bias").dtype, .f32)
        try writeDecodedWeights(container: qst4, to: decoded)
        let ref = try Reference.logits(model: folder, sequences: Self.sequences, override: decoded)
        let model = try FrozenModel(path: qst4, options: EngineOptions(matmulPath: .kernelsExact))
        let batch = TokenBatch(sequences: Self.sequences)
        let logits = try model.logits(batch).array
        let err = relativeFrobenius(
            validRows(logits, lengths: batch.lengths, seqLen: batch.seqLen, vocab: model.vocabSize),
            validRows(ref, lengths: batch.lengths))
        XCTAssertLessThanOrEqual(err, 1e-4)
        // Benchmark reports name the block linears' path for OPT too (fc1 stands for them).
        XCTAssertTrue(model.matmulRoutes(rows: 64).hasPrefix("layers nf4 "), model.matmulRoutes(rows: 64))
    }

    func testBadConfigsAreRefusedByField() throws {
        let base: [String: Any] = [
            "model_type": "opt", "hidden_size": 64, "ffn_dim": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "vocab_size": 300, "max_position_embeddings": 256,
        ]
        XCTAssertEqual(try parse(base).intermediateSize, 128)
        for (key, value, field) in [
            ("activation_function", "silu" as Any, "activation_function"),
            ("num_attention_heads", 5 as Any, "num_attention_heads"),
            ("max_position_embeddings", 0 as Any, "max_position_embeddings"),
        ] {
            var c = base
            c[key] = value
            XCTAssertThrowsError(try parse(c)) { XCTAssertTrue("\($0)".contains(field), "\($0)") }
        }
    }

    private func parse(_ dict: [String: Any]) throws -> ModelConfig {
        try ModelConfig.parse(try JSONSerialization.data(withJSONObject: dict), origin: "test")
    }
}
