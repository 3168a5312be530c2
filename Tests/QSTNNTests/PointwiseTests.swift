import Foundation
import XCTest
@testable import QSTNN

final class PointwiseTests: XCTestCase {
    static func refAct(_ a: Activation, _ x: Double) -> Double {
        switch a {
        case .silu: return x / (1 + exp(-x))
        case .gelu: return 0.5 * x * (1 + erf(x / 2.0.squareRoot()))
        case .relu: return max(0, x)
        }
    }

    func testActivationsForwardBackward() {
        let k = Keep(); defer { withExtendedLifetime(k) {} }
        var rng = TestRandom(20)
        // Keep relu inputs away from its kink so finite differences are valid.
        let x = rng.values(12, scale: 3).map { abs($0) < 0.05 ? $0 + 0.2 : $0 }, r = rng.values(12)
        for act in Activation.allCases {
            let out = k.zeros(12), dx = k.zeros(12), xb = k.f(x)
            act.forward(out: out, x: xb, count: 12)
            assertClose(read(out, 12), x.map { Self.refAct(act, $0) }, rtol: 1e-5, atol: 1e-6, "\(act) forward")
            act.backward(dx: dx, dout: k.f(r), x: xb, count: 12)
            let fd = finiteDifference(x) { weightedSum($0.map { Self.refAct(act, $0) }, r) }
            assertClose(read(dx, 12), fd, rtol: 1e-4, atol: 1e-5, "\(act) backward")
        }
        // Exact (erf) GELU, not the tanh approximation: gelu(1) = Φ(1) = 0.8413447460685429.
        XCTAssertEqual(Activation.gelu.value(1), 0.8413447, accuracy: 1e-6)
        XCTAssertEqual(Activation(huggingFaceName: "swish"), .silu)
    }

    func testSwiGLUForwardBackward() {
        let k = Keep(); defer { withExtendedLifetime(k) {} }
        let n = 10
        var rng = TestRandom(21)
        let g = rng.values(n, scale: 3), u = rng.values(n), r = rng.values(n)
        func ref(_ g: [Double], _ u: [Double]) -> [Double] { zip(g, u).map { Self.refAct(.silu, $0) * $1 } }
        let out = k.zeros(n), gb = k.f(g), ub = k.f(u)
        SwiGLU.forward(out: out, gate: gb, up: ub, count: n)
        assertClose(read(out, n), ref(g, u), rtol: 1e-5, atol: 1e-6, "forward")
        let dg = k.zeros(n), du = k.zeros(n)
        SwiGLU.backward(dgate: dg, dup: du, dout: k.f(r), gate: gb, up: ub, count: n)
        assertClose(read(dg, n), finiteDifference(g) { weightedSum(ref($0, u), r) }, "dgate")
        assertClose(read(du, n), finiteDifference(u) { weightedSum(ref(g, $0), r) }, "dup")
    }

    func testPoolingForwardBackward() {
        let k = Keep(); defer { withExtendedLifetime(k) {} }
        let n = 3, d = 8, r = 4
        var rng = TestRandom(22)
        let x = rng.values(n * d), w = rng.values(n * d / r)
        func ref(_ x: [Double], _ kind: FeaturePool.Kind) -> [Double] {
            (0..<(n * d / r)).map { g in
                let group = x[(g * r)..<(g * r + r)]
                return kind == .average ? group.reduce(0, +) / Double(r) : group.max()!
            }
        }
        for kind in [FeaturePool.Kind.average, .max] {
            let out = k.zeros(n * d / r), dx = k.zeros(n * d), xb = k.f(x)
            FeaturePool.forward(out: out, x: xb, n: n, d: d, r: r, kind: kind)
            assertClose(read(out, n * d / r), ref(x, kind), rtol: 1e-6, atol: 1e-6, "\(kind) forward")
            FeaturePool.backward(dx: dx, dout: k.f(w), x: xb, n: n, d: d, r: r, kind: kind)
            assertClose(read(dx, n * d), finiteDifference(x) { weightedSum(ref($0, kind), w) }, "\(kind) backward")
        }
    }

    func testGatedMixForwardBackward() {
        let k = Keep(); defer { withExtendedLifetime(k) {} }
        let n = 40, d = 3  // several row chunks so the dz reduction is exercised
        var rng = TestRandom(23)
        let a = rng.values(n * d), b = rng.values(n * d), z = rng.values(d, scale: 2), r = rng.values(n * d)
        func ref(_ a: [Double], _ b: [Double], _ z: [Double]) -> [Double] {
            (0..<(n * d)).map { i in
                let s = 1 / (1 + exp(-z[i % d])); return (1 - s) * a[i] + s * b[i]
            }
        }
        let out = k.zeros(n * d), ab = k.f(a), bb = k.f(b), zb = k.f(z)
        GatedMix.forward(out: out, a: ab, b: bb, z: zb, n: n, d: d)
        assertClose(read(out, n * d), ref(a, b, z), rtol: 1e-5, atol: 1e-6, "forward")
        let da = k.zeros(n * d), db = k.zeros(n * d), dz = k.zeros(d)
        GatedMix.backward(da: da, db: db, dz: dz, dout: k.f(r), a: ab, b: bb, z: zb, n: n, d: d)
        assertClose(read(da, n * d), finiteDifference(a) { weightedSum(ref($0, b, z), r) }, "da")
        assertClose(read(db, n * d), finiteDifference(b) { weightedSum(ref(a, $0, z), r) }, "db")
        assertClose(read(dz, d), finiteDifference(z) { weightedSum(ref(a, b, $0), r) }, "dz")
    }

    func testSoftmaxArgmaxAndEmbedding() throws {
        let k = Keep(); defer { withExtendedLifetime(k) {} }
        var rng = TestRandom(24)
        let n = 2, d = 5
        let x = rng.values(n * d, scale: 4), r = rng.values(n * d)
        func ref(_ x: [Double]) -> [Double] {
            (0..<n).flatMap { row -> [Double] in
                let v = Array(x[(row * d)..<(row * d + d)]), m = v.max()!
                let e = v.map { exp($0 - m) }, z = e.reduce(0, +)
                return e.map { $0 / z }
            }
        }
        let y = k.f(x)
        Softmax.forward(y, n: n, d: d)
        assertClose(read(y, n * d), ref(x), rtol: 1e-5, atol: 1e-7, "softmax")
        let dx = k.zeros(n * d)
        Softmax.backward(dx: dx, dout: k.f(r), y: y, n: n, d: d)
        assertClose(read(dx, n * d), finiteDifference(x) { weightedSum(ref($0), r) }, "softmax backward")
        let ls = k.f(x)
        Softmax.logSoftmax(ls, n: n, d: d)
        assertClose(read(ls, n * d), ref(x).map { log($0) }, rtol: 1e-5, atol: 1e-5, "logSoftmax")
        let am = k.ints([0, 0])
        Softmax.argmaxRows(out: am, x: k.f(x), n: n, d: d)
        for row in 0..<n {
            let v = Array(x[(row * d)..<(row * d + d)])
            XCTAssertEqual(Int(am[row]), v.firstIndex(of: v.max()!)!)
        }
        XCTAssertEqual(Softmax.argmax(k.f([1, 3, 3, 2]), d: 4), 1, "first index wins ties")

        let table = (0..<12).map(Double.init), out = k.zeros(3 * 4)
        try Embedding.forward(out: out, ids: k.ints([2, 0, 2]), n: 3, table: k.f(table), vocab: 3, d: 4)
        XCTAssertEqual(read(out, 12), [8, 9, 10, 11, 0, 1, 2, 3, 8, 9, 10, 11])
        let dt = k.zeros(12)
        Embedding.backward(dtable: dt, dout: k.f((0..<12).map { _ in 1 }), ids: k.ints([2, 0, 2]), n: 3, d: 4)
        XCTAssertEqual(read(dt, 12), [1, 1, 1, 1, 0, 0, 0, 0, 2, 2, 2, 2])
        for id: Int32 in [3, -1] {
            XCTAssertThrowsError(
                try Embedding.forward(out: out, ids: k.ints([id]), n: 1, table: k.f(table), vocab: 3, d: 4)
            ) {
                XCTAssertEqual(($0 as? QSTError)?.kind, .tokenOutOfRange, "\($0)")
            }
        }
    }
}
