import Foundation
import XCTest
@testable import QSTEngine
import QSTFormat

/// Sequential GPTQ runs its own staged block forward over all calibration tokens; the engine's forward
/// (`ImportanceMatrix.collect`, recording linears inside `FrozenModel.forward`) is the independent check: with every
/// linear kept, each stage must hand over the Gram matrix the engine's forward records for that linear, and with
/// the asymmetric target the two streams are equal, so the target must be the weights themselves.
final class SequentialGPTQTests: XCTestCase {
    func model() throws -> FrozenModel {
        try FrozenModel(path: try Reference.tiny("tiny-llama"), options: EngineOptions(matmulPath: .dequantizeSGEMM))
    }

    func tokens(_ m: FrozenModel, count: Int) -> [Int32] {
        var g = SystemRandomNumberGenerator()
        return (0..<count).map { _ in Int32.random(in: 0..<Int32(m.config.vocabSize), using: &g) }
    }

    /// Windows of 16 over 40 tokens (the last one partial), nothing quantized: the Gram matrices and importance
    /// equal the engine forward's.
    func testKeptLinearsSeeTheEngineForwardsInputs() throws {
        let m = try model()
        let ids = tokens(m, count: 40)
        let reference = try ImportanceMatrix.collect(model: m, tokens: ids, ctx: 16, textSHA256: "x", gram: true)
        var seen: [String: [Float]] = [:]
        let c = try SequentialGPTQ.run(model: m, tokens: ids, ctx: 16, textSHA256: "x") { name, _, _, _, gram in
            seen[name] = gram
            return nil
        }
        XCTAssertEqual(seen.count, 7 * m.config.numHiddenLayers)
        XCTAssertTrue(c.quantized.isEmpty)
        for (name, gram) in seen {
            let h = try XCTUnwrap(reference.gram(for: name), name)
            XCTAssertEqual(gram.count, h.count, name)
            let scale = h.map { abs($0) }.max()!
            XCTAssertGreaterThan(scale, 0, name)
            for k in 0..<h.count { XCTAssertEqual(gram[k], h[k], accuracy: 1e-4 * scale, "\(name)[\(k)]") }
            let mean = try XCTUnwrap(reference.channels[name]), mine = try XCTUnwrap(c.channels[name])
            for i in 0..<mean.count { XCTAssertEqual(mine[i], mean[i], accuracy: 1e-4 * max(mean[i], 1e-6), name) }
        }
    }

    /// Sequential: with layer 0's linears quantized (plain NF4) and the rest kept, every Gram matrix handed over —
    /// o's from the quantized q/k/v, gate/up's after the quantized o, down's from the quantized gate/up, layer 1's
    /// from the quantized layer 0 — equals what the engine's forward records on a container holding exactly those
    /// quantized tensors (written by `QST4Quantize`, layer 1 and the embeddings kept in F32).
    func testGramsComeFromTheAlreadyQuantizedLinears() throws {
        let source = try Reference.tiny("tiny-llama")
        let file = NSTemporaryDirectory() + "qst-sequential-gptq-\(getpid()).qst4"
        defer { try? FileManager.default.removeItem(atPath: file) }
        var policy = QuantizationPolicy()
        policy.keptDtype = .f32
        policy.keepPatterns = ["^model\\.layers\\.[1-9]"]
        _ = try QST4Quantize(source: source, output: file, policy: policy, createdBy: "test").run()
        let m = try model()
        let ids = tokens(m, count: 40)
        let quantizedModel = try FrozenModel(path: file, options: EngineOptions(matmulPath: .dequantizeSGEMM))
        let reference = try ImportanceMatrix.collect(
            model: quantizedModel, tokens: ids, ctx: 16, textSHA256: "x", gram: true)
        var seen: [String: [Float]] = [:]
        let c = try SequentialGPTQ.run(model: m, tokens: ids, ctx: 16, textSHA256: "x") { name, w, _, _, gram in
            seen[name] = gram
            guard name.hasPrefix("model.layers.0.") else { return nil }
            return try NF4.quantize(w, parameters: policy.nf4, file: "t", tensor: name)
        }
        XCTAssertEqual(c.quantized.count, 7)
        XCTAssertEqual(seen.count, 7 * m.config.numHiddenLayers)
        var differsFromFull = 0
        let full = try ImportanceMatrix.collect(model: m, tokens: ids, ctx: 16, textSHA256: "x", gram: true)
        for (name, gram) in seen {
            let h = try XCTUnwrap(reference.gram(for: name), name)
            let scale = h.map { abs($0) }.max()!
            for k in 0..<h.count { XCTAssertEqual(gram[k], h[k], accuracy: 1e-4 * scale, "\(name)[\(k)]") }
            let f = try XCTUnwrap(full.gram(for: name), name)
            if zip(gram, f).contains(where: { abs($0 - $1) > 1e-3 * scale }) { differsFromFull += 1 }
        }
        // Everything after layer 0's q/k/v reads quantized activations: 4 of layer 0's linears and all of layer 1's.
        XCTAssertEqual(differsFromFull, 7 * m.config.numHiddenLayers - 3)
    }

    /// With the asymmetric target and nothing quantized, both streams are the same model: every linear's target is
    /// its own weights (up to the solve's rounding).
    func testAsymmetricTargetOfAnUnquantizedModelIsItsWeights() throws {
        let m = try model()
        var checked = 0
        _ = try SequentialGPTQ.run(
            model: m, tokens: tokens(m, count: 48), ctx: 24, textSHA256: "x", asymmetricDamp: 0.2
        ) { name, w, rows, cols, _ in
            let t = try m.source.tensor(name)
            var original = [Float](repeating: 0, count: rows * cols)
            original.withUnsafeMutableBufferPointer { t.decode(start: 0, count: rows * cols, into: $0.baseAddress!) }
            let scale = original.map { abs($0) }.max()!
            for k in 0..<(rows * cols) { XCTAssertEqual(w[k], original[k], accuracy: 1e-3 * scale, "\(name)[\(k)]") }
            checked += 1
            return nil
        }
        XCTAssertEqual(checked, 7 * m.config.numHiddenLayers)
    }
}
