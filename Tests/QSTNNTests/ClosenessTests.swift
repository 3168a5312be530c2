import XCTest
import QSTTestSupport

/// The shared comparison helpers fail on NaN and infinities wherever they appear (the pure
/// verdicts are tested, since XCTExpectFailure does not exist on Linux).
final class ClosenessTests: XCTestCase {
    func testVerdictPassesCloseValues() {
        XCTAssertNil(Closeness.verdict([1.0, 2.0, -3.0], [1.0005, 2.0, -3.001], rtol: 1e-3, atol: 1e-4))
        XCTAssertNil(Closeness.verdict([Double](), [], rtol: 0, atol: 0))
        XCTAssertNil(Closeness.verdict([0.0], [-0.0], rtol: 0, atol: 0))
    }

    func testVerdictFailsOnNaNAndInfinityOnEitherSide() {
        let bad: [Double] = [.nan, .infinity, -.infinity, .signalingNaN]
        for v in bad {
            XCTAssertNotNil(Closeness.verdict([1, v, 3], [1, 2, 3], rtol: 1, atol: 1), "actual \(v)")
            XCTAssertNotNil(Closeness.verdict([1, 2, 3], [1, v, 3], rtol: 1, atol: 1), "expected \(v)")
            XCTAssertNotNil(Closeness.verdict([v], [v], rtol: 1e9, atol: 1e9), "both \(v)")
            XCTAssertEqual(Closeness.verdict([1, v, 3], [1, 2, 3], rtol: 1, atol: 1)?.index, 1)
            XCTAssertNotNil(Closeness.verdict([Float(1), Float(v)], [1, 2], rtol: 1, atol: 1), "float \(v)")
            XCTAssertTrue(Closeness.maxAbsoluteError([1, v], [1, 2]).isNaN, "max abs error with \(v)")
            XCTAssertTrue(Closeness.maxRelativeError([1, 2], [1, v]).isNaN, "max rel error with \(v)")
            XCTAssertFalse(Closeness.within(Closeness.maxAbsoluteError([v], [0]), 1e300), "within \(v)")
        }
        XCTAssertFalse(Closeness.within(.nan, .infinity))
    }

    func testVerdictFailsOutsideTheBoundAndReportsTheWorst() {
        let m = Closeness.verdict([1.0, 2.1, 3.5], [1.0, 2.0, 3.0], rtol: 0, atol: 0.05)
        XCTAssertEqual(m?.index, 2)
        XCTAssertNotNil(Closeness.verdict([1.0], [1.0, 2.0], rtol: 1, atol: 1), "count mismatch")
        XCTAssertNotNil(Closeness.verdict([1.0], [1.0], rtol: .nan, atol: 0), "NaN tolerance")
    }

    func testRequirementFailsUnderCI() {
        XCTAssertTrue(TestRequirement.isRequired("QST_REQUIRE_X", environment: ["CI": "true"]))
        XCTAssertTrue(TestRequirement.isRequired("QST_REQUIRE_X", environment: ["QST_REQUIRE_X": "1"]))
        XCTAssertTrue(TestRequirement.isRequired("QST_REQUIRE_X", environment: ["QST_REQUIRE_ALL": "1"]))
        XCTAssertFalse(TestRequirement.isRequired("QST_REQUIRE_X", environment: ["CI": "false"]))
        XCTAssertFalse(TestRequirement.isRequired("QST_REQUIRE_X", environment: [:]))
        // Required: an ordinary error (a failure); otherwise a skip.
        XCTAssertTrue(
            TestRequirement.outcome("no tool", variable: "QST_REQUIRE_X", environment: ["CI": "true"])
                is TestRequirement.Missing)
        XCTAssertTrue(
            TestRequirement.outcome("no tool", variable: "QST_REQUIRE_X", environment: ["QST_REQUIRE_X": "1"])
                is TestRequirement.Missing)
        XCTAssertTrue(TestRequirement.outcome("no tool", variable: "QST_REQUIRE_X", environment: [:]) is XCTSkip)
        XCTAssertTrue(
            "\(TestRequirement.outcome("no tool", variable: "QST_REQUIRE_X", environment: ["CI": "1"]))".contains(
                "no tool"))
    }
}
