import Foundation
import QSTEngine
import QSTFormat
import QSTNN
import XCTest
import QSTTestSupport
@testable import QSTSide

/// The whole side network against Scripts/side_reference.py: an independent float64 NumPy implementation
/// of Formats/SIDE.md whose gradients are float64 central differences. Skipped without the Python venv
/// unless QST_REQUIRE_REFERENCE=1.
final class SideReferenceTests: XCTestCase {
    private func python() throws -> (python: String, script: String) {
        let python = TestEnvironment.python
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        guard FileManager.default.isExecutableFile(atPath: python) else {
            try TestRequirement.unavailable("side reference: no Python at \(python)")
        }
        return (python, repo.appendingPathComponent("Scripts/side_reference.py").path)
    }

    /// `backbone` defaults to a MockBackbone of the config's shape (whose head is its embedding matrix);
    /// another backbone must come with its head matrix `[V, headInputSize]`.
    func check(
        _ config: SideConfig, backbone other: (any FrozenBackbone)? = nil, head: [Float]? = nil,
        batch: SideBatch = SideFixtures.batch()
    ) throws {
        let (py, script) = try python()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("qst-sideref-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let weights = try SideFixtures.weights(config)
        try SideWeightsIO.save(weights, directory: dir)
        let mock = MockBackbone(shape: config.base)
        let backbone = other ?? mock
        // The frozen model's view of the batch, as the reference needs it.
        var tensors: [SafetensorsTensorData] = []
        let n = batch.labels.count, d = config.base.hiddenSize, e = backbone.headInputSize
        let final = try backbone.forwardHiddenStates(batch.tokens) { v, h in
            tensors.append(
                try SafetensorsTensorData(
                    name: "hidden.\(v)", shape: [n, d],
                    floats: Array(UnsafeBufferPointer(start: h, count: n * d))))
        }
        tensors.append(try SafetensorsTensorData(name: "final", shape: [n, e], floats: final))
        tensors.append(
            try SafetensorsTensorData(
                name: "head", shape: [config.base.vocabSize, e], floats: head ?? mock.embed.array))
        tensors.append(
            SafetensorsTensorData(
                name: "labels", dtype: .i32, shape: [n],
                bytes: batch.labels.withUnsafeBytes { Array($0) }))
        if let targets = batch.targets {
            tensors.append(try SafetensorsTensorData(name: "targets", shape: [n], floats: targets))
        }
        let lengths = batch.tokens.lengths.map { Int32($0) }
        tensors.append(
            SafetensorsTensorData(
                name: "lengths", dtype: .i32, shape: [lengths.count],
                bytes: lengths.withUnsafeBytes { Array($0) }))
        try SafetensorsWriter.write(to: dir + "/fixture.safetensors", tensors: tensors)

        let proc = Process()
        proc.executableURL = URL(fileURLWithPath: py)
        proc.arguments = [script, dir, dir + "/fixture.safetensors", dir + "/ref.safetensors"]
        let err = Pipe()
        proc.standardError = err
        try proc.run()
        let errText = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        proc.waitUntilExit()
        guard proc.terminationStatus == 0 else { throw QSTError("side_reference.py failed: \(errText)") }
        let ref = try SafetensorsFile(path: dir + "/ref.safetensors")

        // Evaluation mode: no dropout, so the reference's loss and gradients apply exactly.
        var eval = config
        eval.dropout = 0
        let w2 = try SideWeights(config: eval)
        w2.values.pointer.update(from: weights.values.pointer, count: weights.values.count)
        let model = try SideModel(weights: w2, backbone: backbone)
        var rng = SplitMix64(seed: 0)
        let result = try model.trainStep(batch, rng: &rng)
        let refLoss = try ref.copyElements("loss", as: Double.self)[0]
        XCTAssertEqual(result.mean, refLoss, accuracy: 2e-5 * max(1, abs(refLoss)), "loss vs float64 reference")
        // Every element, relative plus absolute: |swift - ref| <= 1e-4·|ref| + 1e-5·max|ref| of the tensor
        // + 1e-6·max|ref| of the whole network (the last term for tensors whose true gradient is 0,
        // e.g. an attention key bias, where float32 leaves rounding noise of ~1e-7 of the network's
        // gradients). Measured worst 2e-6 – 6e-6 relative (printed below).
        var refs: [String: [Double]] = [:]
        var networkScale = 0.0
        for s in w2.specs {
            let g = try ref.copyElements("grad." + s.name, as: Double.self)
            refs[s.name] = g
            let m = Closeness.maxAbsoluteError(g, [Double](repeating: 0, count: g.count))
            networkScale = m.isNaN || m > networkScale ? m : networkScale
        }
        XCTAssertGreaterThan(networkScale, 1e-6, "reference gradients must not vanish")
        var worstRel = 0.0
        for s in w2.specs {
            let g = refs[s.name]!
            XCTAssertEqual(g.count, s.count, s.name)
            let swift = (0..<s.count).map { Double(w2.grads[s.offset + $0]) }
            let scale = Closeness.maxAbsoluteError(g, [Double](repeating: 0, count: g.count))
            assertClose(
                swift, g, rtol: 1e-4, atol: 1e-5 * scale + 1e-6 * networkScale,
                "gradient \(s.name) vs float64 reference")
            let rel = Closeness.maxRelativeError(swift, g, floor: 0.1 * scale + 0.01 * networkScale)
            worstRel = rel.isNaN || rel > worstRel ? rel : worstRel
        }
        print("side gradients vs float64: worst |d|/(|ref| + 0.1·max|ref|) = \(worstRel)")
    }

    func testAdapterNetworkMatchesFloat64Reference() throws {
        try check(
            SideConfig(
                base: SideFixtures.tinyShape, r: 2, downsample: .adapter, adapterHidden: 3,
                activation: .swish, dropout: 0.1))
    }

    /// The same batch read at each sequence's last token (positions 4 and 5 + 2) by a head.
    private func headBatch(labels: (Int32, Int32), targets: [Float]? = nil) -> SideBatch {
        let base = SideFixtures.batch()
        let x = ChunkedCrossEntropy.ignoreIndex
        var l = [Int32](repeating: x, count: base.labels.count)
        l[4] = labels.0; l[7] = labels.1
        return SideBatch(tokens: base.tokens, labels: l, targets: targets)
    }

    func testClassificationHeadMatchesFloat64Reference() throws {
        try check(
            SideConfig(base: SideFixtures.tinyShape, r: 2, downsample: .adapter, adapterHidden: 3, numLabels: 3),
            batch: headBatch(labels: (2, 1)))
    }

    func testRegressionHeadMatchesFloat64Reference() throws {
        var targets = [Float](repeating: 0, count: 10)
        targets[4] = 0.7; targets[7] = -1.3
        try check(
            SideConfig(base: SideFixtures.tinyShape, r: 2, downsample: .linear, numLabels: 1),
            batch: headBatch(labels: (0, 0), targets: targets))
    }

    func testResidualHeadMixMatchesFloat64Reference() throws {
        try check(
            SideConfig(base: SideFixtures.tinyShape, r: 2, downsample: .adapter, adapterHidden: 3, headMix: .residual))
        try check(
            SideConfig(base: SideFixtures.tinyShape, r: 2, downsample: .avgpool, numLabels: 3, headMix: .residual),
            batch: headBatch(labels: (2, 1)))
    }

    func testLinearGeluAndMaxPoolMatchFloat64Reference() throws {
        try check(SideConfig(base: SideFixtures.tinyShape, r: 2, downsample: .linear, activation: .gelu))
        try check(SideConfig(base: SideFixtures.tinyShape, r: 4, downsample: .maxpool))
    }
}
