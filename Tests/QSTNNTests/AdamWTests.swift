import Foundation
import XCTest
@testable import QSTNN

final class AdamWTests: XCTestCase {
    func testTwoStepsMatchPyTorchAlgorithm() {
        let k = Keep(); defer { withExtendedLifetime(k) {} }
        let w0 = [0.5, -1.0, 2.0], b0 = [0.1, -0.2]
        let gradsW = [[0.1, -0.3, 0.05], [0.2, 0.0, -0.4]], gradsB = [[1.0, -2.0], [0.5, 0.25]]
        let w = k.f(w0), gw = k.zeros(3), b = k.f(b0), gb = k.zeros(2)
        let cfg = AdamW.Config(beta1: 0.8, beta2: 0.95, eps: 1e-6, weightDecay: 0.1)
        let opt = AdamW(
            parameters: [
                Parameter(name: "w", value: w, grad: gw, count: 3),
                Parameter(name: "b", value: b, grad: gb, count: 2, decay: false),
            ], config: cfg)
        let lrs = [0.01, 0.02]
        // PyTorch AdamW documentation, in Double.
        func reference(_ p0: [Double], _ grads: [[Double]], decay: Bool) -> [Double] {
            var p = p0, m = [Double](repeating: 0, count: p0.count), v = m
            for (t, g) in grads.enumerated() {
                let lr = lrs[t], step = Double(t + 1)
                for i in 0..<p.count {
                    if decay { p[i] -= lr * 0.1 * p[i] }
                    m[i] = 0.8 * m[i] + 0.2 * g[i]
                    v[i] = 0.95 * v[i] + 0.05 * g[i] * g[i]
                    let mHat = m[i] / (1 - pow(0.8, step)), vHat = v[i] / (1 - pow(0.95, step))
                    p[i] -= lr * mHat / (vHat.squareRoot() + 1e-6)
                }
            }
            return p
        }
        for t in 0..<2 {
            for i in 0..<3 { gw[i] = Float(gradsW[t][i]) }
            for i in 0..<2 { gb[i] = Float(gradsB[t][i]) }
            opt.update(lr: Float(lrs[t]))
        }
        XCTAssertEqual(opt.step, 2)
        assertClose(read(w, 3), reference(w0, gradsW, decay: true), rtol: 1e-5, atol: 1e-7, "decayed weights")
        assertClose(read(b, 2), reference(b0, gradsB, decay: false), rtol: 1e-5, atol: 1e-7, "undecayed bias")
        opt.zeroGradients()
        XCTAssertEqual(read(gw, 3), [0, 0, 0])
    }

    /// Parameter groups (`lrScales`): the first AdamW step moves every element by exactly
    /// `lr·s·g/(|g| + ε)` (bias-corrected m̂ = g, v̂ = g²) after the decay `p·(1 − lr·s·wd)`, with the group's
    /// scale `s`; a scale of 0 freezes a tensor (no decay either).
    func testLearningRateScalesActAsParameterGroups() {
        let k = Keep(); defer { withExtendedLifetime(k) {} }
        let a0: [Double] = [1.0, -2.0], b0: [Double] = [0.5, 0.25], c0: [Double] = [3.0]
        let a = k.f(a0), b = k.f(b0), c = k.f(c0)
        let ga = k.f([0.3, -0.1]), gb = k.f([-0.2, 0.4]), gc = k.f([1.0])
        let cfg = AdamW.Config(beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1)
        let opt = AdamW(
            parameters: [
                Parameter(name: "a", value: a, grad: ga, count: 2),
                Parameter(name: "b", value: b, grad: gb, count: 2),
                Parameter(name: "c", value: c, grad: gc, count: 1),
            ], config: cfg)
        XCTAssertEqual(opt.lrScales, [1, 1, 1], "one group by default")
        opt.lrScales = [1, 0.25, 0]
        let lr = 0.01
        func expected(_ p0: [Double], _ g: [Double], scale: Double) -> [Double] {
            zip(p0, g).map { p, g in p * (1 - lr * scale * 0.1) - lr * scale * g / (abs(g) + 1e-8) }
        }
        opt.update(lr: Float(lr))
        assertClose(read(a, 2), expected(a0, [0.3, -0.1], scale: 1), rtol: 1e-6, atol: 1e-8, "scale 1")
        assertClose(read(b, 2), expected(b0, [-0.2, 0.4], scale: 0.25), rtol: 1e-6, atol: 1e-8, "scale 0.25")
        XCTAssertEqual(read(c, 1), c0, "scale 0: frozen")
    }

    func testGlobalNormClipping() {
        let k = Keep(); defer { withExtendedLifetime(k) {} }
        let g1 = k.f([3, 0]), g2 = k.f([0, 4, 0])
        let params = [
            Parameter(name: "a", value: k.zeros(2), grad: g1, count: 2),
            Parameter(name: "b", value: k.zeros(3), grad: g2, count: 3),
        ]
        XCTAssertEqual(GradientClipping.clip(params, maxNorm: 10), 5, accuracy: 1e-9)
        XCTAssertEqual(read(g1, 2), [3, 0], "below the limit nothing changes")
        XCTAssertEqual(GradientClipping.clip(params, maxNorm: 1), 5, accuracy: 1e-9)
        XCTAssertEqual(GradientClipping.globalNorm(params), 1, accuracy: 1e-5)
        XCTAssertEqual(Double(g2[1]), 4.0 / 5.0, accuracy: 1e-5)
    }
}
