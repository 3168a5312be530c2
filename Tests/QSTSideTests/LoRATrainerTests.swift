import Foundation
import QSTEngine
import QSTNN
import XCTest
@testable import QSTSide

/// The LoRA training loop on the tiny NF4 LLaMA: loss goes down on a memorisable set, and a run stopped
/// at a checkpoint and resumed ends bit-identical to the uninterrupted one.
final class LoRATrainerTests: XCTestCase {
    static func examples() -> [TrainingExample] {
        var rng = SplitMix64(seed: 12)
        return (0..<12).map { _ in
            let len = 5 + Int(rng.next() % 5)
            let ids = (0..<len).map { _ in Int32(3 + rng.next() % 200) }
            return TrainingExample(ids: ids, labels: Array(ids.dropFirst()) + [ChunkedCrossEntropy.ignoreIndex])
        }
    }

    static func trainer(
        run: String, steps: Int, resume: Bool = false, checkpointing: Bool = false,
        matmulPath: MatmulPath = .kernelsAuto
    ) throws -> LoRATrainer {
        let base = try FrozenModel(path: try ExportFixtures.tinyContainer())
        var t = TrainingConfig()
        t.batchSize = 4; t.maxSteps = steps; t.learningRate = 1e-2; t.saveEvery = 2; t.warmupRatio = 0
        if resume {
            let ck = try LoRACheckpoint.load(run: run, layerCount: base.config.numHiddenLayers, shape: base.blockShape)
            let m = try LoRAModel(
                base: base, weights: ck.weights, gradientCheckpointing: checkpointing, matmulPath: matmulPath)
            return try LoRATrainer(
                model: m, training: t, train: examples(), eval: Array(examples().prefix(4)),
                labelTokens: nil, run: run, resumed: (ck.optimizer, ck.state))
        }
        let m = try LoRAModel.fresh(
            base: base, config: LoRAConfig(r: 4, alpha: 8, dropout: 0.1, seed: 3),
            gradientCheckpointing: checkpointing, matmulPath: matmulPath)
        return try LoRATrainer(
            model: m, training: t, train: examples(), eval: Array(examples().prefix(4)),
            labelTokens: nil, run: run)
    }

    func testLossDecreasesAndResumeIsBitIdentical() throws {
        let straightRun = try ExportFixtures.scratch("straight")
        let straight = try Self.trainer(run: straightRun, steps: 6)
        let before = try straight.evaluate().loss
        _ = try straight.runToEnd()
        let after = try straight.evaluate().loss
        XCTAssertLessThan(after, before - 0.1, "training should fit the tiny set")
        XCTAssertTrue(FileManager.default.fileExists(atPath: straightRun + "/final/adapter_model.safetensors"))
        XCTAssertTrue(LoRACheckpoint.isLoRARun(straightRun))

        let splitRun = try ExportFixtures.scratch("split")
        let first = try Self.trainer(run: splitRun, steps: 6)
        for _ in 0..<4 { try first.step() }
        try first.saveCheckpoint()
        // Resume with gradient checkpointing on: it must not change the numbers.
        let second = try Self.trainer(run: splitRun, steps: 6, resume: true, checkpointing: true)
        XCTAssertEqual(second.state.step, 4)
        _ = try second.runToEnd()
        XCTAssertEqual(second.model.weights.values.array, straight.model.weights.values.array)
    }
}
