import Foundation
import XCTest
import QSTTestSupport

/// What the tool tests share: a fresh temporary folder per test, paths inside it, and running a tool
/// that must succeed. Subclasses hold the tests.
class ToolTestCase: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws {
        try super.setUpWithError()
        dir = try ToolHarness.temporaryDirectory()
    }
    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
        try super.tearDownWithError()
    }

    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    /// Runs `tool args`, asserting exit status 0 (the message carries stderr).
    @discardableResult
    func ok(_ tool: String, _ args: [String]) throws -> ToolHarness.Result {
        let r = try ToolHarness.run(tool, args)
        XCTAssertEqual(r.status, 0, "\(tool) \(args): \(r.stderr)")
        return r
    }

    /// Real-model tool tests are slow unoptimised: they run in release builds, or in debug with
    /// QST_REAL_MODEL_TESTS=1.
    func requireRealModelBuild() throws {
        #if DEBUG
            if ProcessInfo.processInfo.environment["QST_REAL_MODEL_TESTS"] != "1" {
                try TestRequirement.unavailable(
                    "real-model tool test skipped in debug builds (set QST_REAL_MODEL_TESTS=1)",
                    variable: "QST_REAL_MODEL_TESTS")
            }
        #endif
    }
}
