import Foundation
import QSTEngine
import QSTFormat
import QSTNN
import XCTest
import QSTTestSupport
@testable import QSTSide

/// What `qst-eval choice --lora` scores — `LoRAModel.lastHeadInput`, the adapted training forward without
/// dropout — against an independent path: the base with every adapter merged into its weights,
/// W + (alpha/r)·B·A, written as a plain model and run by the frozen inference engine.
final class LoRAPromptScoringTests: XCTestCase {
    func testLastHeadInputEqualsTheMergedModel() throws {
        let folder = try ExportFixtures.tinyLlama()
        let exact = EngineOptions(matmulPath: .kernelsExact)
        let base = try FrozenModel(path: folder, options: exact)
        let config = LoRAConfig(r: 2, alpha: 4, dropout: 0, targets: [.q, .v, .o, .up, .down], seed: 3)
        let w = try LoRAWeights(config: config, layerCount: base.config.numHiddenLayers, shape: base.blockShape)
        w.initialize(seed: 3)
        // PEFT starts B at zero; a trained adapter has not.
        var rng = SplitMix64(seed: 11)
        for p in w.pairs {
            for j in 0..<(p.outF * config.r) { w.values[p.offsetB + j] = (2 * rng.nextFloat() - 1) * 0.5 }
        }
        let adapted = try LoRAModel(base: base, weights: w, matmulPath: .kernelsExact)

        let merged = try ExportFixtures.scratch("lora-merged")
        defer { try? FileManager.default.removeItem(atPath: (merged as NSString).deletingLastPathComponent) }
        try FileManager.default.createDirectory(atPath: merged, withIntermediateDirectories: true)
        for name in ["config.json", "generation_config.json"] {
            try FileManager.default.copyItem(atPath: folder + "/" + name, toPath: merged + "/" + name)
        }
        let file = try SafetensorsFile(path: folder + "/model.safetensors")
        var tensors: [SafetensorsTensorData] = []
        for name in file.tensors.keys.sorted() {
            var values = try file.floats(name)
            let shape = file.tensors[name]!.shape
            for p in w.pairs where name == "model.layers.\(p.layer).\(p.target.modulePath).weight" {
                XCTAssertEqual(shape, [p.outF, p.inF], name)
                for o in 0..<p.outF {
                    for i in 0..<p.inF {
                        var delta = 0.0
                        for k in 0..<config.r {
                            delta +=
                                Double(w.values[p.offsetB + o * config.r + k])
                                * Double(w.values[p.offsetA + k * p.inF + i])
                        }
                        values[o * p.inF + i] += Float(Double(config.scaling) * delta)
                    }
                }
            }
            tensors.append(try SafetensorsTensorData(name: name, shape: shape, floats: values))
        }
        try SafetensorsWriter.write(to: merged + "/model.safetensors", tensors: tensors)
        let reference = try FrozenModel(path: merged, options: exact)

        let e = base.headInputSize
        func last(_ m: FrozenModel, _ ids: [Int32]) throws -> [Float] {
            let h = try m.forward(ids: ids, batch: 1, newTokens: ids.count)
            return Array(UnsafeBufferPointer(start: h.constPointer + (ids.count - 1) * e, count: e))
        }
        for ids: [Int32] in [[1, 5, 9, 200, 31, 77, 150, 4, 18, 99, 12], [3], [7, 42, 43, 260, 5, 8]] {
            let got = try adapted.lastHeadInput(ids), want = try last(reference, ids)
            // Float32 sums in another order (the branch x·Aᵀ·Bᵀ against x·(W + ΔW)ᵀ): measured ≤ 1.4e-6.
            XCTAssertLessThanOrEqual(relativeFrobenius(got, want), 1e-5, "prompt of \(ids.count) tokens")
            // Not vacuous: the adapters move the head input well beyond that.
            XCTAssertGreaterThan(relativeFrobenius(try last(base, ids), want), 1e-2, "the adapters change nothing")
        }
        XCTAssertThrowsError(try adapted.lastHeadInput([]))
    }
}
