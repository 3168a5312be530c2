import Foundation
import QSTEngine
import QSTNN
import XCTest
import QSTTestSupport
@testable import QSTSide

/// LoRA through the frozen tiny LLaMA (NF4 container and F32 folder): the forward with B = 0 equals the
/// engine's own forward; analytic gradients of every LoRA tensor match central finite differences of the
/// loss; gradient checkpointing gives the same gradients; adapters round-trip in PEFT layout.
final class LoRAGradientTests: XCTestCase {
    static let sequences: [[Int32]] = [[1, 17, 250, 33, 8, 99, 4], [1, 5, 140, 61]]

    static func batch() -> SideBatch {
        let examples = sequences.map { ids -> TrainingExample in
            var labels = Array(ids.dropFirst()) + [ChunkedCrossEntropy.ignoreIndex]
            labels[0] = ChunkedCrossEntropy.ignoreIndex  // an unlabelled prompt position
            return TrainingExample(ids: ids, labels: labels)
        }
        return BatchPlan.collate(examples)
    }

    /// Adapters with B off zero too, so A receives gradient and the LoRA path changes the output.
    static func model(_ path: String, config: LoRAConfig, checkpointing: Bool = false) throws -> LoRAModel {
        let base = try FrozenModel(path: path, options: EngineOptions(matmulPath: .dequantizeSGEMM))
        let m = try LoRAModel.fresh(
            base: base, config: config, gradientCheckpointing: checkpointing,
            matmulPath: .dequantizeSGEMM)
        var rng = SplitMix64(seed: 99)
        for p in m.weights.pairs {
            for j in 0..<(p.outF * config.r) { m.weights.values[p.offsetB + j] = 0.2 * (rng.nextFloat() - 0.5) }
        }
        return m
    }

    private func lossAndGrad(_ m: LoRAModel, _ b: SideBatch, seed: UInt64) throws -> Double {
        m.weights.zeroGradients()
        var rng = SplitMix64(seed: seed)
        return try m.trainStep(b, rng: &rng).mean
    }

    /// LoRA's blocks attend with the full causal mask, so a sequence longer than a Mistral base's sliding
    /// window is refused (tiny-mistral-window: window 8) rather than computed unlike the engine.
    func testSequencesLongerThanTheSlidingWindowAreRefused() throws {
        let folder = (try ExportFixtures.tinyLlama() as NSString).deletingLastPathComponent + "/tiny-mistral-window"
        let base = try FrozenModel(path: folder, options: EngineOptions(matmulPath: .dequantizeSGEMM))
        let m = try LoRAModel.fresh(base: base, config: LoRAConfig(r: 4), matmulPath: .dequantizeSGEMM)
        XCTAssertNoThrow(try m.outputHidden(TokenBatch(sequences: [Array(1...8)])))
        XCTAssertThrowsError(try m.outputHidden(TokenBatch(sequences: [Array(1...9)]))) { e in
            XCTAssertTrue("\(e)".contains("sliding_window 8"), "\(e)")
        }
        let long = BatchPlan.collate([TrainingExample(ids: Array(1...12), labels: Array(2...13))])
        var rng = SplitMix64(seed: 1)
        XCTAssertThrowsError(try m.trainStep(long, rng: &rng))
    }

    func testZeroAdaptersReproduceTheEngineForward() throws {
        for path in [try ExportFixtures.tinyContainer(), try ExportFixtures.tinyLlama()] {
            let base = try FrozenModel(path: path, options: EngineOptions(matmulPath: .dequantizeSGEMM))
            let m = try LoRAModel.fresh(base: base, config: LoRAConfig(r: 4), matmulPath: .dequantizeSGEMM)
            let tokens = Self.batch().tokens
            let ours = try m.outputHidden(tokens).array
            let engine = try base.forwardHiddenStates(tokens) { _, _ in }
            var num = 0.0, den = 0.0
            for (b, len) in tokens.lengths.enumerated() {
                for t in 0..<len {
                    for j in 0..<base.hiddenSize {
                        let i = (b * tokens.seqLen + t) * base.hiddenSize + j
                        num += Double(ours[i] - engine[i]) * Double(ours[i] - engine[i]);
                        den += Double(engine[i] * engine[i])
                    }
                }
            }
            XCTAssertLessThan((num / den).squareRoot(), 1e-5, path)
        }
    }

    /// Central differences in F32 forward (loss summed in Double): h = 1e-2 on weights of size ~0.1–0.3.
    private func checkFiniteDifferences(path: String, config: LoRAConfig, checkpointing: Bool, perTensor: Int = 3)
        throws
    {
        let m = try Self.model(path, config: config, checkpointing: checkpointing)
        let b = Self.batch()
        _ = try lossAndGrad(m, b, seed: 3)
        let analytic = m.weights.grads.array
        var rng = SplitMix64(seed: 4)
        var checked = 0
        for p in m.weights.pairs {
            for (offset, count) in [(p.offsetA, config.r * p.inF), (p.offsetB, p.outF * config.r)] {
                for _ in 0..<perTensor {
                    let k = offset + Int(rng.next() % UInt64(count))
                    let saved = m.weights.values[k], h: Float = 1e-2
                    m.weights.values[k] = saved + h
                    let lp = try lossAndGrad(m, b, seed: 3)
                    m.weights.values[k] = saved - h
                    let lm = try lossAndGrad(m, b, seed: 3)
                    m.weights.values[k] = saved
                    let fd = (lp - lm) / Double(2 * h), a = Double(analytic[k])
                    let err = abs(fd - a) / max(abs(fd), abs(a), 2e-3)
                    XCTAssertLessThan(err, 3e-2, "\(p.prefix) @\(k - offset): analytic \(a) vs finite difference \(fd)")
                    checked += 1
                }
            }
        }
        XCTAssertEqual(checked, m.weights.pairs.count * 2 * perTensor)
        let norm = analytic.reduce(0) { $0 + Double($1 * $1) }
        XCTAssertGreaterThan(norm, 1e-6, "gradients must not vanish (the check would pass vacuously)")
    }

    func testGradientsMatchFiniteDifferencesNF4WithDropout() throws {
        try checkFiniteDifferences(
            path: try ExportFixtures.tinyContainer(),
            config: LoRAConfig(r: 2, alpha: 4, dropout: 0.1, seed: 1), checkpointing: false)
    }

    func testGradientsMatchFiniteDifferencesF32Checkpointed() throws {
        try checkFiniteDifferences(
            path: try ExportFixtures.tinyLlama(),
            config: LoRAConfig(r: 3, alpha: 6, dropout: 0, targets: [.q, .v, .o, .down], seed: 2),
            checkpointing: true)
    }

    func testCheckpointingGivesTheSameGradients() throws {
        let path = try ExportFixtures.tinyContainer()
        let config = LoRAConfig(r: 2, alpha: 4, dropout: 0.2, seed: 5)
        let plain = try Self.model(path, config: config),
            ckpt = try Self.model(path, config: config, checkpointing: true)
        let b = Self.batch()
        let l1 = try lossAndGrad(plain, b, seed: 8), l2 = try lossAndGrad(ckpt, b, seed: 8)
        XCTAssertEqual(l1, l2, accuracy: 1e-12)
        let g1 = plain.weights.grads.array, g2 = ckpt.weights.grads.array
        XCTAssertEqual(g1.count, g2.count)
        assertWithin(Closeness.maxAbsoluteError(g1, g2), 1e-6, "checkpointed vs plain gradients")
        XCTAssertGreaterThan(Closeness.maxAbsoluteError(g1, [Float](repeating: 0, count: g1.count)), 1e-4)
    }

    func testAdapterRoundTripInPEFTLayout() throws {
        let path = try ExportFixtures.tinyContainer()
        let m = try Self.model(
            path,
            config: LoRAConfig(
                r: 2, alpha: 8, dropout: 0.05, targets: [.q, .k, .up], seed: 3,
                baseModel: "tiny-llama"))
        let dir = try ExportFixtures.scratch("adapter")
        try LoRAAdapterIO.save(m.weights, directory: dir)
        let json =
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/adapter_config.json")))
            as? [String: Any]
        XCTAssertEqual(json?["peft_type"] as? String, "LORA")
        XCTAssertEqual(json?["r"] as? Int, 2)
        XCTAssertEqual(json?["lora_alpha"] as? Double, 8)
        XCTAssertEqual(json?["target_modules"] as? [String], ["q_proj", "k_proj", "up_proj"])
        XCTAssertEqual(json?["base_model_name_or_path"] as? String, "tiny-llama")
        let file = try QSTFormat.SafetensorsFile(path: dir + "/adapter_model.safetensors")
        XCTAssertEqual(try file.info("base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight").shape, [2, 64])
        XCTAssertEqual(try file.info("base_model.model.model.layers.0.mlp.up_proj.lora_B.weight").shape, [128, 2])
        XCTAssertEqual(file.tensors.count, 2 * 3 * 2)
        let back = try LoRAAdapterIO.load(directory: dir, layerCount: m.weights.layerCount, shape: m.weights.shape)
        XCTAssertEqual(back.config, m.weights.config)
        XCTAssertEqual(back.values.array, m.weights.values.array)
        XCTAssertThrowsError(try LoRAAdapterIO.load(directory: dir, layerCount: 3, shape: m.weights.shape))
    }
}

import QSTFormat
