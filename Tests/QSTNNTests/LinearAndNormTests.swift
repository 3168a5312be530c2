import XCTest
@testable import QSTNN

final class LinearAndNormTests: XCTestCase {
    func testLinearForwardBackwardMatchesFiniteDifferences() {
        let k = Keep(); defer { withExtendedLifetime(k) {} }
        let n = 3, inF = 5, outF = 4
        var rng = TestRandom(1)
        let x = rng.values(n * inF), w = rng.values(outF * inF), b = rng.values(outF), r = rng.values(n * outF)
        let xb = k.f(x), wb = k.f(w), bb = k.f(b), yb = k.zeros(n * outF)
        Linear.forward(out: yb, x: xb, weight: wb, bias: bb, n: n, inFeatures: inF, outFeatures: outF)
        assertClose(
            read(yb, n * outF), refLinear(x, w, b, n: n, inF: inF, outF: outF), rtol: 1e-5, atol: 1e-6, "forward")

        let dx = k.zeros(n * inF), dw = k.zeros(outF * inF), db = k.zeros(outF), dy = k.f(r)
        Linear.backward(
            dx: dx, dweight: dw, dbias: db, dout: dy, x: xb, weight: wb,
            n: n, inFeatures: inF, outFeatures: outF)
        let fx = finiteDifference(x) { weightedSum(refLinear($0, w, b, n: n, inF: inF, outF: outF), r) }
        let fw = finiteDifference(w) { weightedSum(refLinear(x, $0, b, n: n, inF: inF, outF: outF), r) }
        let fb = finiteDifference(b) { weightedSum(refLinear(x, w, $0, n: n, inF: inF, outF: outF), r) }
        assertClose(read(dx, n * inF), fx, "dx")
        assertClose(read(dw, outF * inF), fw, "dW")
        assertClose(read(db, outF), fb, "db")

        // Gradients accumulate: a second backward doubles them.
        Linear.backward(
            dx: dx, dweight: dw, dbias: db, dout: dy, x: xb, weight: wb,
            n: n, inFeatures: inF, outFeatures: outF)
        assertClose(read(dw, outF * inF), fw.map { 2 * $0 }, "dW accumulated")
        assertClose(read(db, outF), fb.map { 2 * $0 }, "db accumulated")

        // accumulate: true adds onto the existing output.
        Linear.forward(
            out: yb, x: xb, weight: wb, bias: nil, n: n, inFeatures: inF, outFeatures: outF, accumulate: true)
        let twice = zip(
            refLinear(x, w, b, n: n, inF: inF, outF: outF), refLinear(x, w, nil, n: n, inF: inF, outF: outF)
        )
        .map { $0 + $1 }
        assertClose(read(yb, n * outF), twice, rtol: 1e-5, atol: 1e-6, "accumulating forward")
    }

    static func refRMSNorm(_ x: [Double], _ w: [Double], n: Int, d: Int, eps: Double) -> [Double] {
        var y = x
        for r in 0..<n {
            let ms = (0..<d).reduce(0.0) { $0 + x[r * d + $1] * x[r * d + $1] } / Double(d)
            let s = 1 / (ms + eps).squareRoot()
            for j in 0..<d { y[r * d + j] = x[r * d + j] * s * w[j] }
        }
        return y
    }

    func testRMSNormForwardBackward() {
        let k = Keep(); defer { withExtendedLifetime(k) {} }
        let n = 4, d = 6, eps = 1e-5
        var rng = TestRandom(2)
        let x = rng.values(n * d), w = rng.values(d).map { 1 + $0 }, r = rng.values(n * d)
        let xb = k.f(x), wb = k.f(w), yb = k.zeros(n * d), rstd = k.zeros(n)
        RMSNorm.forward(out: yb, rstd: rstd, x: xb, weight: wb, n: n, d: d, eps: Float(eps))
        assertClose(read(yb, n * d), Self.refRMSNorm(x, w, n: n, d: d, eps: eps), rtol: 1e-5, atol: 1e-6, "forward")
        let dx = k.zeros(n * d), dw = k.zeros(d)
        RMSNorm.backward(dx: dx, dweight: dw, dout: k.f(r), x: xb, weight: wb, rstd: rstd, n: n, d: d)
        assertClose(
            read(dx, n * d), finiteDifference(x) { weightedSum(Self.refRMSNorm($0, w, n: n, d: d, eps: eps), r) },
            "dx")
        assertClose(
            read(dw, d), finiteDifference(w) { weightedSum(Self.refRMSNorm(x, $0, n: n, d: d, eps: eps), r) }, "dw")
    }

    func testRMSNormWeightGradientReducesAcrossManyRows() {
        // Enough rows that several workers each keep a partial sum.
        let k = Keep(); defer { withExtendedLifetime(k) {} }
        let n = 70, d = 3
        var rng = TestRandom(3)
        let x = rng.values(n * d), w = [1.0, 0.5, -2.0], r = rng.values(n * d)
        let xb = k.f(x), wb = k.f(w), rstd = k.zeros(n), yb = k.zeros(n * d)
        RMSNorm.forward(out: yb, rstd: rstd, x: xb, weight: wb, n: n, d: d, eps: 1e-6)
        let dw = k.zeros(d)
        RMSNorm.backward(dx: nil, dweight: dw, dout: k.f(r), x: xb, weight: wb, rstd: rstd, n: n, d: d)
        assertClose(
            read(dw, d), finiteDifference(w) { weightedSum(Self.refRMSNorm(x, $0, n: n, d: d, eps: 1e-6), r) },
            "dw")
    }

    static func refLayerNorm(_ x: [Double], _ w: [Double], _ b: [Double], n: Int, d: Int, eps: Double) -> [Double] {
        var y = x
        for r in 0..<n {
            let row = Array(x[r * d..<(r + 1) * d])
            let m = row.reduce(0, +) / Double(d)
            let v = row.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(d)
            for j in 0..<d { y[r * d + j] = (row[j] - m) / (v + eps).squareRoot() * w[j] + b[j] }
        }
        return y
    }

    func testLayerNormForwardBackward() {
        let k = Keep(); defer { withExtendedLifetime(k) {} }
        let n = 3, d = 5, eps = 1e-5
        var rng = TestRandom(4)
        let x = rng.values(n * d), w = rng.values(d).map { 1 + $0 }, b = rng.values(d), r = rng.values(n * d)
        let xb = k.f(x), wb = k.f(w), bb = k.f(b)
        let yb = k.zeros(n * d), mean = k.zeros(n), rstd = k.zeros(n)
        LayerNorm.forward(out: yb, mean: mean, rstd: rstd, x: xb, weight: wb, bias: bb, n: n, d: d, eps: Float(eps))
        assertClose(
            read(yb, n * d), Self.refLayerNorm(x, w, b, n: n, d: d, eps: eps), rtol: 1e-5, atol: 1e-5, "forward")
        let dx = k.zeros(n * d), dw = k.zeros(d), db = k.zeros(d)
        LayerNorm.backward(
            dx: dx, dweight: dw, dbias: db, dout: k.f(r), x: xb, weight: wb, mean: mean, rstd: rstd,
            n: n, d: d)
        assertClose(
            read(dx, n * d),
            finiteDifference(x) { weightedSum(Self.refLayerNorm($0, w, b, n: n, d: d, eps: eps), r) }, "dx")
        assertClose(
            read(dw, d), finiteDifference(w) { weightedSum(Self.refLayerNorm(x, $0, b, n: n, d: d, eps: eps), r) },
            "dw")
        assertClose(
            read(db, d), finiteDifference(b) { weightedSum(Self.refLayerNorm(x, w, $0, n: n, d: d, eps: eps), r) },
            "db")
    }
}
