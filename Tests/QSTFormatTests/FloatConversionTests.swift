import XCTest
@testable import QSTFormat

final class FloatConversionTests: XCTestCase {
    typealias Ref = FloatReference

    /// Checks a widened value against the reference value of pattern `h`, including
    /// the sign of zero, and for NaNs the sign and the mantissa payload.
    private func checkWidened(
        _ got: Float, _ h: UInt16, _ f: Ref.Format, file: StaticString = #filePath, line: UInt = #line
    ) {
        let ref = Ref.value(h, f)
        let signBit = (h >> 15) == 1
        if Ref.isNaNPattern(h, f) {
            XCTAssertTrue(got.isNaN, "pattern \(String(h, radix: 16)) should be NaN", file: file, line: line)
            XCTAssertEqual(
                got.sign == .minus, signBit, "NaN sign, pattern \(String(h, radix: 16))", file: file, line: line)
            let payload = (got.bitPattern & 0x7f_ffff) >> UInt32(23 - f.mantissaBits)
            XCTAssertEqual(
                payload, UInt32(h) & UInt32((1 << f.mantissaBits) - 1), "NaN payload", file: file, line: line)
        } else {
            XCTAssertEqual(Double(got), ref, "pattern \(String(h, radix: 16))", file: file, line: line)
            XCTAssertEqual(got.sign == .minus, signBit, "sign, pattern \(String(h, radix: 16))", file: file, line: line)
        }
    }

    func testF16ToF32ExhaustiveScalarAndBulk() {
        let all = (0...0xffff).map { UInt16($0) }
        let bulk = FloatConversion.toF32(all, from: .f16)
        var failures = 0
        for h in all where failures < 20 {
            let s = FloatConversion.f16ToF32(h)
            checkWidened(s, h, Ref.f16)
            if s.bitPattern != bulk[Int(h)].bitPattern { failures += 1 }
        }
        XCTAssertEqual(failures, 0, "bulk and scalar F16 conversions differ")
    }

    func testBF16ToF32ExhaustiveScalarAndBulk() {
        let all = (0...0xffff).map { UInt16($0) }
        let bulk = FloatConversion.toF32(all, from: .bf16)
        for h in all {
            let s = FloatConversion.bf16ToF32(h)
            checkWidened(s, h, Ref.bf16)
            XCTAssertEqual(s.bitPattern, bulk[Int(h)].bitPattern)
        }
    }

    /// Inputs that stress narrowing: every representable value, every midpoint
    /// between neighbours (exact ties), one F32 ulp either side of each midpoint,
    /// F32 specials and subnormals, and random values across and beyond the range.
    private func narrowingInputs(_ f: Ref.Format, randomExponents: ClosedRange<UInt32>) -> [Float] {
        var xs: [Float] = []
        var positives: [Double] = []
        for h in 0..<0x7fff where !Ref.isNaNPattern(UInt16(h), f) {
            let v = Ref.value(UInt16(h), f)
            if v.isFinite { positives.append(v) }
        }
        positives.sort()
        // The midpoint just above the largest finite value decides overflow.
        positives.append(2 * pow(2, Double(f.maxExponent)))
        for (a, b) in zip(positives, positives.dropFirst()) {
            let mid = Float((a + b) / 2)
            XCTAssertEqual(Double(mid), (a + b) / 2, "midpoint must be exact in F32")
            xs += [Float(a), mid, mid.nextUp, mid.nextDown]
        }
        xs += [
            0, .infinity, .leastNonzeroMagnitude, .leastNormalMagnitude, .greatestFiniteMagnitude,
            Float(bitPattern: 0x7fc0_0000), Float(bitPattern: 0x7f80_0001), Float(bitPattern: 0x7fbf_ffff),
            Float(bitPattern: 0x7fd5_5555), Float(bitPattern: 0x0000_1234),
        ]
        var rng = STRandom(seed: 0x5eed)
        for _ in 0..<100_000 {
            let r = rng.next()
            let exp =
                randomExponents.lowerBound + UInt32(r >> 40)
                % (randomExponents.upperBound - randomExponents.lowerBound + 1)
            xs.append(Float(bitPattern: exp << 23 | UInt32(truncatingIfNeeded: r) & 0x7f_ffff))
        }
        return xs + xs.map { -$0 }
    }

    private func checkNarrowing(
        _ xs: [Float], _ f: Ref.Format, _ dtype: DType,
        scalar: (Float) -> UInt16
    ) {
        let bulk = FloatConversion.fromF32(xs, to: dtype)
        var failures = 0
        for (i, x) in xs.enumerated() where failures < 20 {
            let got = scalar(x)
            if got != bulk[i] { failures += 1; XCTFail("bulk \(bulk[i]) != scalar \(got) for \(x)") }
            if x.isNaN {
                if !Ref.isNaNPattern(got, f) || (got >> 15 == 1) != (x.sign == .minus) {
                    failures += 1; XCTFail("NaN \(String(x.bitPattern, radix: 16)) gave \(String(got, radix: 16))")
                }
                continue
            }
            let want = Ref.rounded(x, f)
            let gotValue = Ref.value(got, f)
            if gotValue != want || (got >> 15 == 1) != (x.sign == .minus) {
                failures += 1
                XCTFail("\(dtype) of \(x) (bits \(String(x.bitPattern, radix: 16))): got \(gotValue) want \(want)")
            }
        }
    }

    func testF32ToF16RoundsToNearestEven() {
        // Exponents 2^-30 ... 2^17 cover zero-flush, subnormals, normals and overflow.
        let xs = narrowingInputs(Ref.f16, randomExponents: 97...144)
        checkNarrowing(xs, Ref.f16, .f16, scalar: FloatConversion.f32ToF16)
    }

    func testF32ToBF16RoundsToNearestEven() {
        let xs = narrowingInputs(Ref.bf16, randomExponents: 0...254)
        checkNarrowing(xs, Ref.bf16, .bf16, scalar: FloatConversion.f32ToBF16)
    }

    func testNarrowingEdgeCasesByHand() {
        // Values from the IEEE definitions, as a readable cross-check of the reference.
        XCTAssertEqual(FloatConversion.f32ToF16(65504), 0x7bff)
        XCTAssertEqual(FloatConversion.f32ToF16(65519.996), 0x7bff)
        XCTAssertEqual(FloatConversion.f32ToF16(65520), 0x7c00)  // tie above max goes to "even" 2^16 = inf
        XCTAssertEqual(FloatConversion.f32ToF16(-1e9), 0xfc00)
        XCTAssertEqual(FloatConversion.f32ToF16(1 + 0x1p-11), 0x3c00)  // tie, 1.0 is even
        XCTAssertEqual(FloatConversion.f32ToF16(1 + 3 * 0x1p-11), 0x3c02)  // tie, rounds up to even
        XCTAssertEqual(FloatConversion.f32ToF16(0x1p-25), 0x0000)  // half the smallest subnormal: tie to 0
        XCTAssertEqual(FloatConversion.f32ToF16(Float(0x1p-25).nextUp), 0x0001)
        XCTAssertEqual(FloatConversion.f32ToF16(0x1p-24 * 1.5), 0x0002)  // tie between 1 and 2 subnormal steps
        XCTAssertEqual(FloatConversion.f32ToF16(-0.0), 0x8000)
        XCTAssertEqual(FloatConversion.f32ToBF16(1 + 0x1p-8), 0x3f80)
        XCTAssertEqual(FloatConversion.f32ToBF16(1 + 3 * 0x1p-8), 0x3f82)
        XCTAssertEqual(FloatConversion.f32ToBF16(.greatestFiniteMagnitude), 0x7f80)
        XCTAssertEqual(FloatConversion.f32ToBF16(Float(bitPattern: 0xff80_0001)) & 0xff80, 0xff80)
        XCTAssertNotEqual(FloatConversion.f32ToBF16(Float(bitPattern: 0x7f80_0001)) & 0x7f, 0)  // NaN stays NaN
    }

    /// Long buffers go through the multithreaded path; it must agree with the scalar one.
    func testParallelBulkMatchesScalar() {
        let n = FloatConversion.parallelThreshold * 2 + 17
        var rng = STRandom(seed: 42)
        let bits = (0..<n).map { _ in UInt16(truncatingIfNeeded: rng.next()) }
        let wideF16 = FloatConversion.toF32(bits, from: .f16)
        let wideBF16 = FloatConversion.toF32(bits, from: .bf16)
        let floats = (0..<n).map { _ in Float(bitPattern: UInt32(truncatingIfNeeded: rng.next())) }
        let narrowF16 = FloatConversion.fromF32(floats, to: .f16)
        let narrowBF16 = FloatConversion.fromF32(floats, to: .bf16)
        for i in stride(from: 0, to: n, by: 7) {
            XCTAssertEqual(wideF16[i].bitPattern, FloatConversion.f16ToF32(bits[i]).bitPattern)
            XCTAssertEqual(wideBF16[i].bitPattern, FloatConversion.bf16ToF32(bits[i]).bitPattern)
            XCTAssertEqual(narrowF16[i], FloatConversion.f32ToF16(floats[i]))
            XCTAssertEqual(narrowBF16[i], FloatConversion.f32ToBF16(floats[i]))
        }
    }
}
