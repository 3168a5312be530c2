import Foundation
import XCTest
@testable import QSTNN

final class RoPETests: XCTestCase {
    /// Llama 3 frequency rule restated in terms of r = originalContext / wavelength = originalContext·f/(2π):
    /// keep f when r > highFactor, divide by `factor` when r < lowFactor, otherwise blend linearly in r.
    func testLlama3InverseFrequenciesMatchIndependentFormula() {
        let headDim = 128, theta = 500_000.0
        let factor = 8.0, low = 1.0, high = 4.0, original = 8192
        let got = RoPE.inverseFrequencies(
            headDim: headDim, theta: theta,
            scaling: .llama3(
                factor: factor, lowFreqFactor: low, highFreqFactor: high,
                originalMaxPositionEmbeddings: original))
        XCTAssertEqual(got.count, headDim / 2)
        var kept = 0, scaled = 0, blended = 0
        for i in 0..<headDim / 2 {
            let f = exp(-Double(2 * i) / Double(headDim) * log(theta))
            let r = Double(original) * f / (2 * Double.pi)
            let expected: Double
            if r > high {
                expected = f; kept += 1
            } else if r < low {
                expected = f / factor; scaled += 1
            } else {
                let s = (r - low) / (high - low)
                expected = f * (s + (1 - s) / factor)
                blended += 1
            }
            XCTAssertEqual(Double(got[i]), expected, accuracy: expected * 1e-6, "inv_freq[\(i)]")
        }
        // The configuration exercises all three regimes.
        XCTAssertGreaterThan(kept, 0); XCTAssertGreaterThan(scaled, 0); XCTAssertGreaterThan(blended, 0)
    }

    func testDefaultAndLinearInverseFrequencies() {
        let plain = RoPE.inverseFrequencies(headDim: 8, theta: 10000)
        let linear = RoPE.inverseFrequencies(headDim: 8, theta: 10000, scaling: .linear(factor: 4))
        let expected = [1.0, 0.1, 0.01, 0.001]  // 10000^(-2i/8)
        for i in 0..<4 {
            XCTAssertEqual(Double(plain[i]), expected[i], accuracy: expected[i] * 1e-6)
            XCTAssertEqual(Double(linear[i]), expected[i] / 4, accuracy: expected[i] * 1e-6)
        }
    }

    /// HF: q·cos + rotate_half(q)·sin with rotate_half(x) = cat(−x[half:], x[:half]) and cos = cat(c, c).
    static func refRoPE(_ x: [Double], positions: [Int], invFreq: [Double], nHeads: Int, headDim: Int) -> [Double] {
        let half = headDim / 2
        var y = x
        for (t, p) in positions.enumerated() {
            let c = (0..<headDim).map { cos(Double(p) * invFreq[$0 % half]) }
            let s = (0..<headDim).map { sin(Double(p) * invFreq[$0 % half]) }
            for h in 0..<nHeads {
                let base = t * nHeads * headDim + h * headDim
                let v = Array(x[base..<base + headDim])
                let rotated = v[half...].map { -$0 } + v[..<half]
                for i in 0..<headDim { y[base + i] = v[i] * c[i] + rotated[i] * s[i] }
            }
        }
        return y
    }

    func testForwardMatchesRotateHalfAndBackwardIsTranspose() {
        let k = Keep(); defer { withExtendedLifetime(k) {} }
        let nHeads = 2, headDim = 6, positions = [0, 3, 17, 5]
        let n = positions.count, width = nHeads * headDim
        let inv = RoPE.inverseFrequencies(headDim: headDim, theta: 10000)
        var rng = TestRandom(5)
        let x = rng.values(n * width), r = rng.values(n * width)
        let cosT = k.zeros(n * headDim / 2), sinT = k.zeros(n * headDim / 2)
        RoPE.cosSin(cos: cosT, sin: sinT, positions: k.ints(positions.map(Int32.init)), n: n, invFreq: inv)
        let xb = k.f(x)
        RoPE.forward(x: xb, cos: cosT, sin: sinT, n: n, nHeads: nHeads, headDim: headDim)
        let invD = inv.map(Double.init)
        assertClose(
            read(xb, n * width),
            Self.refRoPE(
                x, positions: positions, invFreq: invD, nHeads: nHeads,
                headDim: headDim), rtol: 1e-5, atol: 1e-5, "forward")
        let g = k.f(r)
        RoPE.backward(dx: g, cos: cosT, sin: sinT, n: n, nHeads: nHeads, headDim: headDim)
        let fd = finiteDifference(x) {
            weightedSum(Self.refRoPE($0, positions: positions, invFreq: invD, nHeads: nHeads, headDim: headDim), r)
        }
        assertClose(read(g, n * width), fd, rtol: 1e-4, atol: 1e-5, "backward")
    }

    func testScoresDependOnlyOnRelativePositionAndStrideWorks() {
        let k = Keep(); defer { withExtendedLifetime(k) {} }
        let headDim = 8
        let inv = RoPE.inverseFrequencies(headDim: headDim, theta: 10000)
        var rng = TestRandom(6)
        let q = rng.values(headDim), kv = rng.values(headDim)
        // Rows laid out [q | k] in one fused buffer of stride 2·headDim; rotate only the first head of each row.
        func score(_ pq: Int, _ pk: Int) -> Double {
            let buf = k.f(q + kv + kv + q)  // row 0 = (q, k), row 1 = (k, q)
            let c = k.zeros(2 * headDim / 2), s = k.zeros(2 * headDim / 2)
            RoPE.cosSin(cos: c, sin: s, positions: k.ints([Int32(pq), Int32(pk)]), n: 2, invFreq: inv)
            RoPE.forward(x: buf, cos: c, sin: s, n: 2, nHeads: 1, headDim: headDim, rowStride: 2 * headDim)
            // rotated q is row 0 head 0, rotated k is row 1 head 0; the untouched halves must stay as they were.
            XCTAssertEqual(read(buf + headDim, headDim), kv.map { Double(Float($0)) })
            return (0..<headDim).reduce(0.0) { $0 + Double(buf[$1]) * Double(buf[2 * headDim + $1]) }
        }
        XCTAssertEqual(score(10, 7), score(3, 0), accuracy: 1e-4)
        XCTAssertEqual(score(40, 38), score(2, 0), accuracy: 1e-4)
        XCTAssertNotEqual(score(10, 7), score(10, 8), accuracy: 1e-4)
    }
}
