import XCTest
@testable import QSTNN

final class DropoutTests: XCTestCase {
    func testSplitMix64MatchesReferenceStream() {
        // First outputs of Vigna's splitmix64.c seeded with 0.
        var rng = SplitMix64(seed: 0)
        XCTAssertEqual(rng.next(), 0xE220_A839_7B1D_CDAF)
        XCTAssertEqual(rng.next(), 0x6E78_9E6A_A1B9_65F4)
        XCTAssertEqual(rng.next(), 0x06C4_5D18_8009_454F)
    }

    func testStateSaveRestoreReproducesStream() throws {
        var rng = SplitMix64(seed: 42)
        for _ in 0..<5 { _ = rng.next() }
        let saved = try JSONEncoder().encode(rng)
        let a = (0..<10).map { _ in rng.next() }
        var restored = try JSONDecoder().decode(SplitMix64.self, from: saved)
        XCTAssertEqual((0..<10).map { _ in restored.next() }, a)
        var peeker = try JSONDecoder().decode(SplitMix64.self, from: saved)
        XCTAssertEqual(peeker.peek(3), a[2])
        peeker.advance(by: 4)
        XCTAssertEqual(peeker.next(), a[4])
    }

    func testMaskStatisticsScalingAndDeterminism() {
        let k = Keep(); defer { withExtendedLifetime(k) {} }
        let n = 20_000, p: Float = 0.3
        let x = k.f((0..<n).map { Double($0 % 7) + 1 })
        let out = k.zeros(n), mask = k.bytes([UInt8](repeating: 9, count: n))
        var rng = SplitMix64(seed: 7)
        let start = rng
        Dropout.forward(out: out, mask: mask, x: x, count: n, p: p, rng: &rng)
        let dropped = (0..<n).filter { mask[$0] == 0 }.count
        // Binomial(n, p): 4.5 standard deviations ≈ 290.
        XCTAssertEqual(Double(dropped), Double(n) * Double(p), accuracy: 4.5 * (Double(n) * 0.3 * 0.7).squareRoot())
        for i in 0..<n {
            XCTAssertTrue(mask[i] == 0 || mask[i] == 1)
            let expected = mask[i] == 1 ? x[i] / (1 - p) : 0
            XCTAssertEqual(out[i], expected, accuracy: 1e-5)
        }
        XCTAssertEqual(rng.state, start.state &+ UInt64(n) &* SplitMix64.gamma, "consumes one draw per element")

        // Same seed, same mask; the next call draws a different one.
        var again = SplitMix64(seed: 7)
        let mask2 = k.bytes([UInt8](repeating: 0, count: n)), out2 = k.zeros(n)
        Dropout.forward(out: out2, mask: mask2, x: x, count: n, p: p, rng: &again)
        XCTAssertTrue((0..<n).allSatisfy { mask[$0] == mask2[$0] })
        Dropout.forward(out: out2, mask: mask2, x: x, count: n, p: p, rng: &again)
        XCTAssertFalse((0..<n).allSatisfy { mask[$0] == mask2[$0] })

        // Backward routes gradient through kept elements only, with the same scale.
        let dx = k.zeros(n), dy = k.f((0..<n).map { _ in 2 })
        Dropout.backward(dx: dx, dout: dy, mask: mask, count: n, p: p)
        for i in 0..<n { XCTAssertEqual(dx[i], mask[i] == 1 ? 2 / (1 - p) : 0, accuracy: 1e-6) }
    }

    func testZeroProbabilityIsIdentityAndConsumesNothing() {
        let k = Keep(); defer { withExtendedLifetime(k) {} }
        let x = k.f([1, -2, 3]), out = k.zeros(3), mask = k.bytes([0, 0, 0])
        var rng = SplitMix64(seed: 3)
        Dropout.forward(out: out, mask: mask, x: x, count: 3, p: 0, rng: &rng)
        XCTAssertEqual(read(out, 3), [1, -2, 3])
        XCTAssertEqual(rng.state, 3)
    }
}
