import Foundation
import QSTEngine
import QSTNN
import XCTest
import QSTTestSupport
@testable import QSTSide

/// Analytic gradients of the hand-written side network against central finite differences of the loss.
final class SideGradientTests: XCTestCase {
    /// Loss (mean CE) of `model` on `batch` with dropout drawn from `seed`; gradients left in `weights.grads`.
    private func lossAndGrad(_ model: SideModel, _ batch: SideBatch, seed: UInt64) throws -> Double {
        model.weights.zeroGradients()
        var rng = SplitMix64(seed: seed)
        return try model.trainStep(batch, rng: &rng).mean
    }

    /// Checks every element of every tensor (`perTensor` limits it for the bigger real-shape runs)
    /// with a relative-plus-absolute bound: |analytic - fd| <= 1e-2·|fd| + max(2e-4, 1e-2·max|fd| of the
    /// tensor) (float32 forward, step 1e-2: the finite differences themselves carry ~1e-4 – 1e-3 of
    /// rounding and truncation error; the float64 references in SideReferenceTests hold the same
    /// gradients to ~1e-5 relative).
    func checkAllTensors(
        _ config: SideConfig, backbone: (any FrozenBackbone)? = nil, perTensor: Int = .max,
        file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let weights = try SideFixtures.weights(config)
        let model = try SideModel(weights: weights, backbone: backbone ?? MockBackbone(shape: config.base))
        let batch = SideFixtures.batch()
        _ = try lossAndGrad(model, batch, seed: 11)
        let analytic = weights.grads.array
        var rng = SplitMix64(seed: 5)
        var checked = 0
        var fds: [Double] = [], analytics: [Double] = []
        for s in weights.specs {
            let picks =
                s.count <= perTensor
                ? Array(0..<s.count) : (0..<perTensor).map { _ in Int(rng.next() % UInt64(s.count)) }
            var fd: [Double] = [], an: [Double] = []
            for j in picks {
                let k = s.offset + j
                let saved = weights.values[k]
                let h: Float = 1e-2
                weights.values[k] = saved + h
                let lp = try lossAndGrad(model, batch, seed: 11)
                weights.values[k] = saved - h
                let lm = try lossAndGrad(model, batch, seed: 11)
                weights.values[k] = saved
                fd.append((lp - lm) / Double(2 * h))
                an.append(Double(analytic[k]))
                checked += 1
            }
            let tensorScale = Closeness.maxAbsoluteError(fd, [Double](repeating: 0, count: fd.count))
            assertClose(
                an, fd, rtol: 1e-2, atol: max(2e-4, 1e-2 * tensorScale), "\(s.name): analytic vs finite difference",
                file: file, line: line)
            fds += fd; analytics += an
        }
        print(
            "side gradient check: \(checked) elements, max |analytic - fd| = \(Closeness.maxAbsoluteError(analytics, fds))"
        )
        XCTAssertGreaterThan(checked, 20, file: file, line: line)
        // Gradients must not be trivially zero: the test would then pass vacuously.
        let norm = analytic.reduce(0) { $0 + Double($1 * $1) }
        XCTAssertGreaterThan(norm, 1e-6, file: file, line: line)
    }

    func testWholeNetworkAdapterWithDropout() throws {
        try checkAllTensors(
            SideConfig(
                base: SideFixtures.tinyShape, r: 2, downsample: .adapter, adapterHidden: 3,
                activation: .swish, dropout: 0.25, seed: 1))
    }

    func testWholeNetworkLinearGelu() throws {
        try checkAllTensors(
            SideConfig(
                base: SideFixtures.tinyShape, r: 2, downsample: .linear,
                activation: .gelu, dropout: 0.1, seed: 1))
    }

    func testWholeNetworkAvgPool() throws {
        try checkAllTensors(SideConfig(base: SideFixtures.tinyShape, r: 2, downsample: .avgpool, dropout: 0.1))
    }

    func testWholeNetworkResidualHeadMix() throws {
        try checkAllTensors(
            SideConfig(
                base: SideFixtures.tinyShape, r: 2, downsample: .adapter, adapterHidden: 3,
                dropout: 0.25, seed: 1, headMix: .residual))
    }

    func testWholeNetworkMaxPoolRelu() throws {
        try checkAllTensors(SideConfig(base: SideFixtures.tinyShape, r: 4, downsample: .maxpool, activation: .relu))
    }
}
