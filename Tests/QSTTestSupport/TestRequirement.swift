import Foundation
import XCTest

/// What a test does when something it needs (a tool, data, a model, a privilege) is missing.
/// Locally it skips with the reason. Under CI (`CI=true` or `CI=1`), or when `QST_REQUIRE_ALL=1`
/// or the requirement's own variable (e.g. `QST_REQUIRE_REFERENCE=1`) is set, it throws an error
/// instead, so the test fails with the reason: CI cannot pass while silently running less.
/// Tests of a CPU feature the machine lacks use XCTSkipUnless directly and are the only skips CI
/// accepts (benchmarks are not tests: Sources/qst-bench).
public enum TestRequirement {
    public struct Missing: Error, CustomStringConvertible {
        public var description: String
    }

    public static var environment: [String: String] { ProcessInfo.processInfo.environment }

    /// Whether missing inputs fail rather than skip (`variable` is the requirement's own switch).
    public static func isRequired(
        _ variable: String = "QST_REQUIRE_REFERENCE", environment env: [String: String]? = nil
    ) -> Bool {
        let env = env ?? environment
        let ci = (env["CI"] ?? "").lowercased()
        return ci == "true" || ci == "1" || env["QST_REQUIRE_ALL"] == "1" || env[variable] == "1"
    }

    /// What `unavailable` throws: a skip, or (when required) an error that fails the test.
    public static func outcome(_ reason: String, variable: String, environment env: [String: String]? = nil)
        -> any Error
    {
        if isRequired(variable, environment: env) {
            return Missing(description: "required but unavailable (\(variable) / CI): \(reason)")
        }
        return XCTSkip("\(reason) (set \(variable)=1 or CI=true to fail instead)")
    }

    /// Skips, or fails when required. Never returns.
    public static func unavailable(_ reason: String, variable: String = "QST_REQUIRE_REFERENCE") throws -> Never {
        throw outcome(reason, variable: variable)
    }

    /// `unavailable` unless `condition` holds.
    public static func require(
        _ condition: Bool, _ reason: @autoclosure () -> String,
        variable: String = "QST_REQUIRE_REFERENCE"
    ) throws {
        if !condition { try unavailable(reason(), variable: variable) }
    }

    /// The first existing path among `candidates`, else `unavailable`.
    public static func existingPath(_ candidates: [String], what: String, variable: String = "QST_REQUIRE_DATA") throws
        -> String
    {
        if let p = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) { return p }
        try unavailable("\(what) not found (looked in \(candidates))", variable: variable)
    }

    /// `sub` inside the shared data folder (`TestEnvironment.dataDir`), else `unavailable`.
    public static func sharedData(_ sub: String) throws -> String {
        try existingPath([TestEnvironment.dataDir + "/" + sub], what: "shared data \(sub)")
    }
}
