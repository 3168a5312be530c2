import Foundation
import QSTEngine
import QSTFormat
import QSTNN
import XCTest
import QSTTestSupport
@testable import QSTSide

/// The LoRA backward (every element of every lora_A / lora_B) against an independent float64
/// reference: Scripts/lora_reference.py differentiates the NumPy forward with merged weights
/// W + (alpha/r)·B·A by complex steps (exact derivatives, no hand-written backward).
final class LoRAReferenceTests: XCTestCase {
    func testLoRAGradientsMatchFloat64Reference() throws {
        let py = ExportFixtures.python
        guard FileManager.default.isExecutableFile(atPath: py) else {
            try TestRequirement.unavailable("LoRA reference: no Python at \(py)")
        }
        let folder = try ExportFixtures.tinyLlama()
        let config = LoRAConfig(r: 2, alpha: 4, dropout: 0, targets: [.q, .v, .down], seed: 7)
        let m = try LoRAGradientTests.model(folder, config: config)
        let batch = LoRAGradientTests.batch()
        m.weights.zeroGradients()
        var rng = SplitMix64(seed: 1)
        let loss = try m.trainStep(batch, rng: &rng).mean

        let dir = try ExportFixtures.scratch("lora-ref")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try LoRAAdapterIO.save(m.weights, directory: dir)
        let labels = LoRAGradientTests.sequences.map { ids -> [Int] in
            var l = Array(ids.dropFirst()).map(Int.init) + [-100]
            l[0] = -100
            return l
        }
        let caseJSON: [String: Any] = [
            "sequences": LoRAGradientTests.sequences.map { $0.map(Int.init) }, "labels": labels,
        ]
        try JSONSerialization.data(withJSONObject: caseJSON).write(to: URL(fileURLWithPath: dir + "/case.json"))
        let script = ExportFixtures.repo + "/Scripts/lora_reference.py"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: py)
        p.arguments = [script, folder, dir, dir + "/case.json", dir + "/ref.safetensors"]
        let err = Pipe()
        p.standardError = err
        try p.run()
        let errText = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw QSTError("lora_reference.py failed: \(errText)") }
        let ref = try SafetensorsFile(path: dir + "/ref.safetensors")
        let refLoss = try ref.copyElements("loss", as: Double.self)[0]
        XCTAssertEqual(loss, refLoss, accuracy: 1e-5 * abs(refLoss), "loss vs float64 reference")

        // Every element: |swift - ref| <= 1e-4·|ref| + 1e-5·max|ref| of the tensor (float32 forward
        // and backward against exact float64 derivatives; measured worst |d| / max|ref| 1.8e-6).
        let saved = try SafetensorsFile(path: dir + "/adapter_model.safetensors")
        let grads = m.weights.grads.array
        var checked = 0, worst = 0.0
        for p in m.weights.pairs {
            for (suffix, offset, count) in [
                ("lora_A", p.offsetA, config.r * p.inF), ("lora_B", p.offsetB, p.outF * config.r),
            ] {
                let name = suffix == "lora_A" ? p.nameA : p.nameB
                XCTAssertNotNil(try? saved.info(name), "adapter tensor \(name)")
                let g = try ref.copyElements(name, as: Double.self)
                XCTAssertEqual(g.count, count, name)
                let swift = (0..<count).map { Double(grads[offset + $0]) }
                let scale = max(Closeness.maxAbsoluteError(g, [Double](repeating: 0, count: g.count)), 1e-6)
                assertClose(swift, g, rtol: 1e-4, atol: 1e-5 * scale, "\(name) vs float64 reference")
                let rel = Closeness.maxAbsoluteError(swift, g) / scale
                worst = rel.isNaN || rel > worst ? rel : worst
                checked += count
            }
        }
        print("LoRA gradients vs float64 reference: \(checked) elements, worst |d| / max|ref| = \(worst)")
        XCTAssertGreaterThan(checked, 1000)
    }
}
