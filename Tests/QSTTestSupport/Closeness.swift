import XCTest

/// The one element-wise comparison of the test suite. `verdict` is a pure function (so a test can
/// check that it fails where it must: XCTExpectFailure does not exist on Linux); `assertClose`
/// turns its verdict into an XCTFail.
///
/// An element passes when `|actual - expected| <= atol + rtol * |expected|`, written so that any
/// NaN or infinity on either side fails: the bound test is `!(err <= bound)`, and non-finite
/// values are refused before it (an infinity equal on both sides is still refused: no test here
/// expects one).
public enum Closeness {
    public struct Mismatch: CustomStringConvertible, Equatable {
        public var index: Int
        public var actual: Double
        public var expected: Double
        public var bound: Double
        public var reason: String
        public var description: String {
            "index \(index): got \(actual), expected \(expected) (\(reason), bound \(bound))"
        }
    }

    /// The first failing element (or a count mismatch at index -1); nil when all pass.
    public static func verdict(_ actual: [Double], _ expected: [Double], rtol: Double, atol: Double) -> Mismatch? {
        guard actual.count == expected.count else {
            return Mismatch(
                index: -1, actual: Double(actual.count), expected: Double(expected.count), bound: 0,
                reason: "element count differs")
        }
        guard rtol.isFinite, atol.isFinite, rtol >= 0, atol >= 0 else {
            return Mismatch(index: -1, actual: rtol, expected: atol, bound: 0, reason: "bad tolerance")
        }
        var worst: Mismatch?
        var worstExcess = 0.0
        for i in actual.indices {
            let a = actual[i], e = expected[i]
            let bound = atol + rtol * abs(e)
            if !a.isFinite || !e.isFinite {
                return Mismatch(index: i, actual: a, expected: e, bound: bound, reason: "not finite")
            }
            let err = abs(a - e)
            if !(err <= bound) {
                let excess = err / max(bound, .leastNonzeroMagnitude)
                if worst == nil || excess > worstExcess {
                    worst = Mismatch(index: i, actual: a, expected: e, bound: bound, reason: "error \(err)")
                    worstExcess = excess
                }
            }
        }
        return worst
    }

    public static func verdict(_ actual: [Float], _ expected: [Float], rtol: Double, atol: Double) -> Mismatch? {
        verdict(actual.map(Double.init), expected.map(Double.init), rtol: rtol, atol: atol)
    }

    /// Largest `|a - e| / (|e| + floor)` over all elements, NaN if any value is not finite (so a
    /// caller's `XCTAssertLessThanOrEqual(measured, bound)` fails on NaN too). Used to report
    /// measured errors next to the asserted bound.
    public static func maxRelativeError(_ actual: [Double], _ expected: [Double], floor: Double = 0) -> Double {
        guard actual.count == expected.count else { return .nan }
        var worst = 0.0
        for (a, e) in zip(actual, expected) {
            guard a.isFinite, e.isFinite else { return .nan }
            worst = max(worst, abs(a - e) / (abs(e) + floor))
        }
        return worst
    }

    /// Largest `|a - e|`, NaN if any value is not finite or the counts differ.
    public static func maxAbsoluteError(_ actual: [Double], _ expected: [Double]) -> Double {
        guard actual.count == expected.count else { return .nan }
        var worst = 0.0
        for (a, e) in zip(actual, expected) {
            guard a.isFinite, e.isFinite else { return .nan }
            worst = max(worst, abs(a - e))
        }
        return worst
    }

    public static func maxAbsoluteError(_ actual: [Float], _ expected: [Float]) -> Double {
        maxAbsoluteError(actual.map(Double.init), expected.map(Double.init))
    }

    /// `measured <= bound`, false for NaN (the comparison every "err > bound" check should be).
    public static func within(_ measured: Double, _ bound: Double) -> Bool { measured <= bound }
}

/// XCTFail with the first (worst) failing element unless every element is close.
public func assertClose(
    _ actual: [Double], _ expected: [Double], rtol: Double = 1e-3, atol: Double = 1e-4,
    _ what: String, file: StaticString = #filePath, line: UInt = #line
) {
    if let m = Closeness.verdict(actual, expected, rtol: rtol, atol: atol) {
        XCTFail("\(what): \(m)", file: file, line: line)
    }
}

public func assertClose(
    _ actual: [Float], _ expected: [Float], rtol: Double = 1e-3, atol: Double = 1e-4,
    _ what: String, file: StaticString = #filePath, line: UInt = #line
) {
    assertClose(
        actual.map(Double.init), expected.map(Double.init), rtol: rtol, atol: atol, what, file: file, line: line)
}

/// XCTFail unless `measured <= bound` (fails on NaN, unlike `if measured > bound`).
public func assertWithin(
    _ measured: Double, _ bound: Double, _ what: String,
    file: StaticString = #filePath, line: UInt = #line
) {
    if !Closeness.within(measured, bound) {
        XCTFail("\(what): measured \(measured), bound \(bound)", file: file, line: line)
    }
}

/// ‖a − b‖ / ‖b‖ over paired values: the suite's one relative Frobenius error. NaN when the counts differ
/// or a value is not finite, so `XCTAssertLessThanOrEqual(err, bound)` and `XCTAssertGreaterThan` both fail.
public func relativeFrobenius(_ a: [Double], _ b: [Double]) -> Double {
    guard a.count == b.count else { return .nan }
    var num = 0.0, den = 0.0
    for i in a.indices { num += (a[i] - b[i]) * (a[i] - b[i]); den += b[i] * b[i] }
    return (num / max(den, 1e-300)).squareRoot()
}

public func relativeFrobenius(_ a: [Float], _ b: [Float]) -> Double {
    relativeFrobenius(a.map(Double.init), b.map(Double.init))
}
