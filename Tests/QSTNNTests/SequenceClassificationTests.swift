import XCTest
@testable import QSTNN

/// The classification head's loss and hand-written backward: hand-computed cases and central finite
/// differences (in Double, from the loss the same function returns) for cross-entropy and squared error.
final class SequenceClassificationTests: XCTestCase {
    private let x = ChunkedCrossEntropy.ignoreIndex

    func testHandComputedCrossEntropy() throws {
        let k = Keep(); defer { withExtendedLifetime(k) {} }
        // z = W·[1, 2] + b = [1, 2.5]; class 0: loss = log(1 + e^1.5); dz = softmax − onehot.
        let h = k.f([1, 2]), w = k.f([1, 0, 0, 1]), b = k.f([0, 0.5])
        let dh = k.zeros(2), dw = k.zeros(4), db = k.zeros(2)
        let r = try SequenceClassification.lossAndGradient(
            hidden: h, labels: k.ints([0]), targets: nil, n: 1, d: 2,
            weight: w, bias: b, k: 2, dHidden: dh, dWeight: dw, dBias: db)
        XCTAssertEqual(r.count, 1)
        XCTAssertEqual(r.lossSum, 1.7014132779827524, accuracy: 1e-6)
        let p0 = 0.18242552380635635, p1 = 0.8175744761936437
        let expected: [(UnsafeMutablePointer<Float>, [Double])] = [
            (db, [p0 - 1, p1]), (dw, [p0 - 1, 2 * (p0 - 1), p1, 2 * p1]), (dh, [p0 - 1, p1]),
        ]
        for (got, want) in expected {
            for (j, v) in want.enumerated() { XCTAssertEqual(Double(got[j]), v, accuracy: 1e-6) }
        }
    }

    func testHandComputedSquaredError() throws {
        let k = Keep(); defer { withExtendedLifetime(k) {} }
        // y = [0.5, −1]·[2, 1] + 0.25 = 0.25, target 1: loss 0.5625, dy = 2(y − t) = −1.5.
        let dh = k.zeros(2), dw = k.zeros(2), db = k.zeros(1)
        let r = try SequenceClassification.lossAndGradient(
            hidden: k.f([2, 1]), labels: k.ints([0]), targets: k.f([1]), n: 1, d: 2, weight: k.f([0.5, -1]),
            bias: k.f([0.25]), k: 1, dHidden: dh, dWeight: dw, dBias: db)
        XCTAssertEqual(r.lossSum, 0.5625, accuracy: 1e-7)
        XCTAssertEqual(db[0], -1.5, accuracy: 1e-6)
        XCTAssertEqual([dw[0], dw[1]], [-3, -1.5])
        XCTAssertEqual([dh[0], dh[1]], [-0.75, 1.5])
    }

    /// Mean loss over the labelled rows (Double) with every gradient checked against central differences.
    private func finiteDifferences(k K: Int) throws {
        let n = 4, d = 5
        var rnd = TestRandom(UInt64(7 + K))
        var hidden = rnd.values(n * d), weight = rnd.values(K * d), bias = rnd.values(K)
        let labels: [Int32] = K == 1 ? [0, x, 0, 0] : [2 % Int32(K), x, 0, 1]
        let targets = rnd.values(n, scale: 2)
        func run(_ hv: [Double], _ wv: [Double], _ bv: [Double], grads: Bool) throws -> (
            Double, [Float], [Float], [Float]
        ) {
            let k = Keep(); defer { withExtendedLifetime(k) {} }
            let dh = k.zeros(n * d), dw = k.zeros(K * d), db = k.zeros(K)
            let r = try SequenceClassification.lossAndGradient(
                hidden: k.f(hv), labels: k.ints(labels), targets: k.f(targets), n: n, d: d, weight: k.f(wv),
                bias: k.f(bv), k: K, dHidden: grads ? dh : nil, dWeight: grads ? dw : nil, dBias: grads ? db : nil)
            return (
                r.mean, Array(UnsafeBufferPointer(start: dh, count: n * d)),
                Array(UnsafeBufferPointer(start: dw, count: K * d)), Array(UnsafeBufferPointer(start: db, count: K))
            )
        }
        let (_, gh, gw, gb) = try run(hidden, weight, bias, grads: true)
        let eps = 1e-3
        func check(_ analytic: [Float], _ name: String, _ perturb: (Int, Double) -> Void) throws {
            for j in analytic.indices {
                perturb(j, eps); let lp = try run(hidden, weight, bias, grads: false).0
                perturb(j, -2 * eps); let lm = try run(hidden, weight, bias, grads: false).0
                perturb(j, eps)
                let fd = (lp - lm) / (2 * eps)
                XCTAssertEqual(Double(analytic[j]), fd, accuracy: 2e-3 * max(1, abs(fd)), "K=\(K) \(name)[\(j)]")
            }
        }
        try check(gh, "hidden") { hidden[$0] += $1 }
        try check(gw, "weight") { weight[$0] += $1 }
        try check(gb, "bias") { bias[$0] += $1 }
        // The unlabelled row gets no gradient; labelled ones do.
        XCTAssertTrue(gh[d..<2 * d].allSatisfy { $0 == 0 })
        XCTAssertGreaterThan(gh[0..<d].map { abs($0) }.max() ?? 0, 1e-4)
    }

    func testCrossEntropyGradientsMatchFiniteDifferences() throws { try finiteDifferences(k: 3) }
    func testSquaredErrorGradientsMatchFiniteDifferences() throws { try finiteDifferences(k: 1) }

    func testBadLabelsAreRejected() {
        let k = Keep(); defer { withExtendedLifetime(k) {} }
        XCTAssertThrowsError(
            try SequenceClassification.lossAndGradient(
                hidden: k.f([1, 2]), labels: k.ints([2]), targets: nil, n: 1, d: 2, weight: k.f([1, 0, 0, 1]),
                bias: k.f([0, 0]), k: 2, dHidden: nil, dWeight: nil, dBias: nil)
        ) { XCTAssertEqual(($0 as? QSTError)?.kind, .labelOutOfRange, "\($0)") }
        XCTAssertThrowsError(
            try SequenceClassification.lossAndGradient(
                hidden: k.f([1, 2]), labels: k.ints([0]), targets: nil, n: 1, d: 2, weight: k.f([1, 0]),
                bias: k.f([0]), k: 1, dHidden: nil, dWeight: nil, dBias: nil)
        ) { XCTAssertEqual(($0 as? QSTError)?.kind, .invalidArgument, "\($0)") }
    }
}
