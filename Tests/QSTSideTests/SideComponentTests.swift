import Foundation
import QSTEngine
import QSTKernels
import QSTNN
import XCTest
import QSTTestSupport
@testable import QSTSide

/// Finite-difference checks of the side-specific pieces on their own, with loss = Σ out ⊙ R for a fixed
/// random R (so every output element carries a distinct gradient).
final class SideComponentTests: XCTestCase {
    let config = SideConfig(
        base: SideFixtures.tinyShape, r: 2, downsample: .adapter, adapterHidden: 3,
        activation: .swish, dropout: 0.3)

    private func randoms(_ n: Int, seed: UInt64) -> [Float] {
        var rng = SplitMix64(seed: seed)
        return (0..<n).map { _ in rng.nextGaussian() }
    }

    private func assertClose(
        _ analytic: Double, _ fd: Double, _ what: String, tol: Double = 2e-2,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        let err = abs(fd - analytic) / max(abs(fd), abs(analytic), 1e-2)
        XCTAssertLessThan(err, tol, "\(what): analytic \(analytic) vs finite difference \(fd)", file: file, line: line)
    }

    func testDownsamplersWithDropoutAgainstFiniteDifferences() throws {
        for kind in [DownsampleKind.adapter, .linear] {
            var c = config
            c.downsample = kind
            let w = try SideFixtures.weights(c)
            let n = 6, d = c.base.hiddenSize, width = c.width
            let h = randoms(n * d, seed: 1), R = randoms(n * width, seed: 2)
            let out = FloatBuffer(count: n * width)
            func loss() -> Double {
                let tape = DownsampleTape()
                tape.reserve(rows: n, config: c)
                var rng = SplitMix64(seed: 9)
                h.withUnsafeBufferPointer {
                    Downsampler.forward(
                        layer: 1, weights: w, h: $0.baseAddress!, n: n, out: out.pointer, tape: tape,
                        rng: &rng, scratch: FloatBuffer(count: 0))
                }
                return (0..<(n * width)).reduce(0.0) { $0 + Double(out[$1] * R[$1]) }
            }
            // Analytic.
            let tape = DownsampleTape()
            tape.reserve(rows: n, config: c)
            var rng = SplitMix64(seed: 9)
            h.withUnsafeBufferPointer {
                Downsampler.forward(
                    layer: 1, weights: w, h: $0.baseAddress!, n: n, out: out.pointer, tape: tape,
                    rng: &rng, scratch: FloatBuffer(count: 0))
            }
            // Dropout must actually zero some inputs in training (the reference's inverted condition did not).
            let zeros = (0..<(n * d)).filter { tape.input[$0] == 0 }.count
            XCTAssertGreaterThan(zeros, n * d / 10, "\(kind): dropout 0.3 dropped only \(zeros) of \(n * d)")
            w.zeroGradients()
            R.withUnsafeBufferPointer { Downsampler.backward(layer: 1, weights: w, dout: $0.baseAddress!, tape: tape) }
            let grads = w.grads.array
            for s in w.specs where s.name.hasPrefix("model.downsample.1.") {
                for j in stride(from: 0, to: s.count, by: max(1, s.count / 5)) {
                    let k = s.offset + j, saved = w.values[k], eps: Float = 1e-2
                    w.values[k] = saved + eps; let lp = loss()
                    w.values[k] = saved - eps; let lm = loss()
                    w.values[k] = saved
                    assertClose(Double(grads[k]), (lp - lm) / Double(2 * eps), "\(kind) \(s.name)[\(j)]")
                }
            }
            // Other layers' downsamplers are untouched.
            for s in w.specs where s.name.hasPrefix("model.downsample.0.") {
                XCTAssertTrue((0..<s.count).allSatisfy { grads[s.offset + $0] == 0 }, s.name)
            }
        }
    }

    func testEvaluationDownsampleHasNoDropoutAndPoolsMatchDefinition() throws {
        var c = config
        c.downsample = .avgpool
        let w = try SideWeights(config: c)
        let n = 3, d = c.base.hiddenSize
        let h = randoms(n * d, seed: 4)
        let out = FloatBuffer(count: n * c.width)
        var rng = SplitMix64(seed: 1)
        h.withUnsafeBufferPointer {
            Downsampler.forward(
                layer: 0, weights: w, h: $0.baseAddress!, n: n, out: out.pointer, tape: nil,
                rng: &rng, scratch: FloatBuffer(count: 0))
        }
        for r in 0..<n {
            for g in 0..<c.width {
                let want = (h[r * d + 2 * g] + h[r * d + 2 * g + 1]) / 2
                XCTAssertEqual(out[r * c.width + g], want, accuracy: 1e-6)
            }
        }
        XCTAssertEqual(rng, SplitMix64(seed: 1), "evaluation must not consume dropout randomness")
    }

    func testSideBlockAgainstFiniteDifferences() throws {
        let w = try SideFixtures.weights(config)
        let lengths = [4, 2], T = 4, n = 8, width = config.width
        let g = SideBatchGeometry(
            config: config, lengths: lengths, seqLen: T,
            invFreq: RoPE.inverseFrequencies(headDim: config.headDim, theta: 10000))
        let ws = SideBlockWorkspace(config: config, geometry: g)
        var x = randoms(n * width, seed: 5)
        let R = randoms(n * width, seed: 6)
        let out = FloatBuffer(count: n * width)
        func loss() -> Double {
            x.withUnsafeBufferPointer {
                SideBlock.forward(layer: 1, weights: w, x: $0.baseAddress!, out: out.pointer, geometry: g, ws: ws)
            }
            return (0..<(n * width)).reduce(0.0) { $0 + Double(out[$1] * R[$1]) }
        }
        _ = loss()
        w.zeroGradients()
        let dx = FloatBuffer(count: n * width)
        x.withUnsafeBufferPointer { xp in
            R.withUnsafeBufferPointer {
                SideBlock.backward(
                    layer: 1, weights: w, x: xp.baseAddress!, dout: $0.baseAddress!, dx: dx.pointer,
                    geometry: g, ws: ws)
            }
        }
        let grads = w.grads.array
        let eps: Float = 1e-2
        for j in 0..<(n * width) {
            let saved = x[j]
            x[j] = saved + eps; let lp = loss()
            x[j] = saved - eps; let lm = loss()
            x[j] = saved
            assertClose(Double(dx[j]), (lp - lm) / Double(2 * eps), "dx[\(j)]")
        }
        var checked = 0
        for s in w.specs where s.name.hasPrefix("model.qst_layers.1.") {
            for j in stride(from: 0, to: s.count, by: max(1, s.count / 4)) {
                let k = s.offset + j, saved = w.values[k]
                w.values[k] = saved + eps; let lp = loss()
                w.values[k] = saved - eps; let lm = loss()
                w.values[k] = saved
                assertClose(Double(grads[k]), (lp - lm) / Double(2 * eps), "\(s.name)[\(j)]")
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 30)
    }

    /// The side's attention against QSTNN's (itself checked against Double references): GQA, padding, T=21.
    func testSideAttentionMatchesQSTNNAttention() {
        let shape = Attention.Shape(batch: 2, seqLen: 21, nHeads: 4, nKVHeads: 2, headDim: 4)
        let lengths = [21, 13]
        let nq = 2 * 21 * 16, nk = 2 * 21 * 8
        let q = randoms(nq, seed: 1), k = randoms(nk, seed: 2), v = randoms(nk, seed: 3), dout = randoms(nq, seed: 4)
        let mask = Attention.maskFromLengths(lengths, seqLen: 21)
        var results: [[Float]] = []
        for useSide in [false, true] {
            let out = FloatBuffer(count: nq), probs = FloatBuffer(count: shape.probsCount)
            let dq = FloatBuffer(count: nq), dk = FloatBuffer(count: nk), dv = FloatBuffer(count: nk)
            q.withUnsafeBufferPointer { qp in
                k.withUnsafeBufferPointer { kp in
                    v.withUnsafeBufferPointer { vp in
                        dout.withUnsafeBufferPointer { dp in
                            mask.withUnsafeBufferPointer { mp in
                                if useSide {
                                    SideAttention.forward(
                                        out: out.pointer, probs: probs.pointer, q: qp.baseAddress!, k: kp.baseAddress!,
                                        v: vp.baseAddress!, lengths: lengths, shape: shape)
                                    SideAttention.backward(
                                        dq: dq.pointer, dk: dk.pointer, dv: dv.pointer, dout: dp.baseAddress!,
                                        q: qp.baseAddress!, k: kp.baseAddress!, v: vp.baseAddress!,
                                        probs: probs.pointer, lengths: lengths, shape: shape)
                                } else {
                                    Attention.forward(
                                        out: out.pointer, probs: probs.pointer, q: qp.baseAddress!, k: kp.baseAddress!,
                                        v: vp.baseAddress!, keyMask: mp.baseAddress!, shape: shape)
                                    Attention.backward(
                                        dq: dq.pointer, dk: dk.pointer, dv: dv.pointer, dout: dp.baseAddress!,
                                        q: qp.baseAddress!, k: kp.baseAddress!, v: vp.baseAddress!,
                                        probs: probs.pointer, shape: shape)
                                }
                            }
                        }
                    }
                }
            }
            results.append(out.array + dq.array + dk.array + dv.array)
        }
        QSTTestSupport.assertClose(results[1], results[0], rtol: 2e-5, atol: 2e-5, "fast path vs reference path")
    }

    func testVectorExpMatchesLibm() {
        var row = (0..<1000).map { -Float($0) * 0.09 + 3 }
        let want = row.map { Foundation.exp(Double($0) - 3) }
        var mx: Float = 0, sum64 = 0.0
        let rc = row.withUnsafeMutableBufferPointer {
            qst_exp_from_max($0.baseAddress!, 997, &mx, &sum64, Int32(QST_VEC_AUTO.rawValue))
        }
        XCTAssertEqual(rc, 0)
        XCTAssertEqual(mx, 3, "the shift is the row's maximum")
        let sum = Float(sum64)
        // The 2e-38 floor: below the normal range the exponential stops at ~1.2e-38.
        for j in 0..<997 { XCTAssertEqual(Double(row[j]), want[j], accuracy: 3e-7 * want[j] + 2e-38) }
        XCTAssertEqual(Double(sum), want.prefix(997).reduce(0, +), accuracy: 1e-6 * Double(sum))
        XCTAssertEqual(row[998], -Float(998) * 0.09 + 3, "elements past count are untouched")
    }
}
