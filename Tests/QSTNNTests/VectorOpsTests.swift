import XCTest
@testable import QSTNN

final class VectorOpsTests: XCTestCase {
    func testElementwiseHelpers() {
        let k = Keep(); defer { withExtendedLifetime(k) {} }
        let a = k.f([1, 2, 3]), b = k.f([10, 20, 30]), out = k.zeros(3)
        VectorOps.add(out: out, a, b, count: 3)
        XCTAssertEqual(read(out, 3), [11, 22, 33])
        VectorOps.axpy(out, alpha: -2, a, count: 3)
        XCTAssertEqual(read(out, 3), [9, 18, 27])
        VectorOps.scale(out, by: 0.5, count: 3)
        XCTAssertEqual(read(out, 3), [4.5, 9, 13.5])
    }

    func testGaussianFillMoments() {
        let k = Keep(); defer { withExtendedLifetime(k) {} }
        let n = 20_000, x = k.zeros(n)
        var rng = SplitMix64(seed: 1)
        VectorOps.fillGaussian(x, count: n, mean: 1, std: 2, rng: &rng)
        let v = read(x, n), mean = v.reduce(0, +) / Double(n)
        let variance = v.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(n)
        // Standard errors: mean 2/√n ≈ 0.014, variance ≈ 4·√(2/n) ≈ 0.04.
        XCTAssertEqual(mean, 1, accuracy: 0.06)
        XCTAssertEqual(variance, 4, accuracy: 0.2)
    }
}
