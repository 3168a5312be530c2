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
