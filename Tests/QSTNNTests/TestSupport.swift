import XCTest
@_exported import QSTTestSupport
@testable import QSTNN

/// Test-only deterministic inputs (a plain LCG, independent of the RNG under test).
struct TestRandom {
    var state: UInt64
    init(_ seed: UInt64) { state = seed &* 6364136223846793005 &+ 1442695040888963407 }
    mutating func uniform() -> Double {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Double(state >> 11) * 0x1.0p-53
    }
    /// Uniform in [-scale, scale).
    mutating func values(_ n: Int, scale: Double = 1) -> [Double] {
        (0..<n).map { _ in (uniform() * 2 - 1) * scale }
    }
}

func floats(_ x: [Double]) -> FloatBuffer { FloatBuffer(x.map { Float($0) }) }

/// Holds buffers for a whole test: ops receive raw pointers, and Swift may otherwise release a buffer
/// right after its last mention. Use `let k = Keep(); defer { withExtendedLifetime(k) {} }`.
final class Keep {
    private var held: [AnyObject] = []
    func f(_ x: [Double]) -> UnsafeMutablePointer<Float> { let b = floats(x); held.append(b); return b.pointer }
    func zeros(_ n: Int) -> UnsafeMutablePointer<Float> {
        let b = FloatBuffer(count: n); held.append(b); return b.pointer
    }
    func ints(_ x: [Int32]) -> UnsafeMutablePointer<Int32> {
        let b = Buffer<Int32>(x); held.append(b); return b.pointer
    }
    func bytes(_ x: [UInt8]) -> UnsafeMutablePointer<UInt8> {
        let b = Buffer<UInt8>(x); held.append(b); return b.pointer
    }
    func hold<T: AnyObject>(_ b: T) -> T { held.append(b); return b }
}

func read(_ p: UnsafePointer<Float>, _ n: Int) -> [Double] { (0..<n).map { Double(p[$0]) } }
func read(_ p: UnsafeMutablePointer<Float>, _ n: Int) -> [Double] { (0..<n).map { Double(p[$0]) } }
func doubles(_ b: FloatBuffer) -> [Double] { b.array.map { Double($0) } }

/// Central finite differences of a scalar Double function.
func finiteDifference(_ x: [Double], h: Double = 1e-5, _ f: ([Double]) -> Double) -> [Double] {
    var g = [Double](repeating: 0, count: x.count)
    var xp = x
    for i in 0..<x.count {
        xp[i] = x[i] + h
        let fp = f(xp)
        xp[i] = x[i] - h
        let fm = f(xp)
        xp[i] = x[i]
        g[i] = (fp - fm) / (2 * h)
    }
    return g
}

/// `Σ out·weights`: the scalar whose gradient w.r.t. `out` is `weights`.
func weightedSum(_ out: [Double], _ weights: [Double]) -> Double {
    zip(out, weights).reduce(0) { $0 + $1.0 * $1.1 }
}

// assertClose: the suite's one NaN-safe comparison, from QSTTestSupport (Closeness.swift).

/// Naive Double matrix product helpers for references.
/// `x [n, inF]`, `w [outF, inF]` → `[n, outF]`.
func refLinear(_ x: [Double], _ w: [Double], _ b: [Double]?, n: Int, inF: Int, outF: Int) -> [Double] {
    var y = [Double](repeating: 0, count: n * outF)
    for r in 0..<n {
        for o in 0..<outF {
            var s = b?[o] ?? 0
            for i in 0..<inF { s += x[r * inF + i] * w[o * inF + i] }
            y[r * outF + o] = s
        }
    }
    return y
}
