import XCTest
@testable import QSTFormat

/// The table shortcut of double quantization must give the pivot search's index for every input:
/// a sweep over float32 bit patterns in (-2, 2) and beyond, every threshold and its ±4-ulp neighbours,
/// and the special values.
final class DynamicMap8LookupTests: XCTestCase {
    func testLookupEqualsSearch() {
        let code = DynamicMap8.signedCode
        let lookup = DynamicMap8Lookup.shared.table
        var checked = 0, ambiguous = 0
        code.withUnsafeBufferPointer { c in
            func check(_ x: Float) {
                let want = DynamicMap8.nearestIndex(x, code: c.baseAddress!)
                let got = DynamicMap8Lookup.index(x, lookup: lookup, code: c.baseAddress!)
                if got != want {
                    XCTFail("x = \(x) (bits \(String(x.bitPattern, radix: 16))): table \(got), search \(want)")
                }
                checked += 1
            }
            // Every 61st bit pattern of the positive floats below 4 (and their negatives): all exponents.
            var bits: UInt32 = 0
            while bits < 0x4080_0000 {
                check(Float(bitPattern: bits))
                check(Float(bitPattern: bits | 0x8000_0000))
                bits &+= 61
            }
            for t in DynamicMap8Lookup.thresholds(code) {
                for d in -4...4 {
                    check(Float(bitPattern: UInt32(bitPattern: Int32(bitPattern: t.bitPattern) &+ Int32(d))))
                }
            }
            for x: Float in [
                0, -0.0, 1, -1, .nan, .infinity, -.infinity, .leastNonzeroMagnitude, -.leastNonzeroMagnitude,
                1.0000001, -1.0000001, .greatestFiniteMagnitude,
            ] { check(x) }
        }
        for key in 0..<(1 << 16) where lookup[key] == DynamicMap8Lookup.ambiguous { ambiguous += 1 }
        XCTAssertGreaterThan(checked, 30_000_000)
        // Most keys below |x| = 2 resolve without a search (else the table would buy nothing).
        XCTAssertLessThan(ambiguous, 1 << 15 + 1024, "\(ambiguous) ambiguous keys")
    }
}
