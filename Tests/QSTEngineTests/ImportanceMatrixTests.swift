import Foundation
import XCTest
@testable import QSTEngine
import QSTFormat

/// The calibration pass: the per-channel mean squares (the importance) and, for GPTQ, the input Gram matrices
/// are collected by separate code paths (a Swift loop and BLAS's syrk), so each checks the other: the Gram
/// diagonal over the token count is the importance; every linear of a block maps to a Gram matrix of its own
/// input width, symmetric and positive semi-definite on the diagonal, shared by the linears that read one input.
final class ImportanceMatrixTests: XCTestCase {
    func testGramDiagonalIsTheImportanceAndInputsAreShared() throws {
        let model = try FrozenModel(
            path: try Reference.tiny("tiny-llama"), options: EngineOptions(matmulPath: .dequantizeSGEMM))
        var g = SystemRandomNumberGenerator()
        let tokens = (0..<40).map { _ in Int32.random(in: 0..<Int32(model.config.vocabSize), using: &g) }
        let c = try ImportanceMatrix.collect(model: model, tokens: tokens, ctx: 16, textSHA256: "x", gram: true)
        let layers = model.config.numHiddenLayers
        XCTAssertEqual(c.channels.count, 7 * layers)
        XCTAssertEqual(c.grams.count, 4 * layers)  // q (shared by k, v), o, gate (shared by up), down
        for l in 0..<layers {
            let p = "model.layers.\(l)."
            XCTAssertEqual(c.gramOf[p + "self_attn.k_proj.weight"], p + "self_attn.q_proj.weight")
            XCTAssertEqual(c.gramOf[p + "self_attn.v_proj.weight"], p + "self_attn.q_proj.weight")
            XCTAssertEqual(c.gramOf[p + "mlp.up_proj.weight"], p + "mlp.gate_proj.weight")
        }
        for (name, mean) in c.channels {
            let h = try XCTUnwrap(c.gram(for: name), name)
            let k = mean.count
            XCTAssertEqual(h.count, k * k, name)
            for i in 0..<k {
                let d = Double(h[i * k + i]) / Double(tokens.count)
                XCTAssertEqual(d, Double(mean[i]), accuracy: 1e-4 * max(Double(mean[i]), 1e-6), "\(name) channel \(i)")
                for j in 0..<i { XCTAssertEqual(h[i * k + j], h[j * k + i], "\(name) (\(i), \(j))") }
            }
        }
        // Without `gram` nothing extra is kept.
        let plain = try ImportanceMatrix.collect(model: model, tokens: tokens, ctx: 16, textSHA256: "x")
        XCTAssertTrue(plain.grams.isEmpty)
        XCTAssertEqual(plain.channels, c.channels)
    }
}
