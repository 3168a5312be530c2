import Foundation
import XCTest
import QSTFormat

/// qst-tune records the base it trained on (RUN/base.json), so exporting a run needs no --base, and a
/// --base that is not that model is refused.
final class RunBaseIdentityTests: ToolTestCase {
    func testExportOfARunFindsItsBase() throws {
        let f = BadInputFixtures(dir: dir)
        let model = try f.synthetic, side = try f.syntheticSide
        let data = path("train.jsonl")
        try (0..<8).map { "{\"text\": \"the cat \($0) sat on the mat\"}" }.joined(separator: "\n")
            .write(toFile: data, atomically: true, encoding: .utf8)
        _ = try ok(
            "qst-tune",
            [
                model, side, "-o", path("run"), "--data", data, "--steps", "2", "--batch-size", "2",
                "--max-length", "16", "--preset", "instruct", "--eval-every", "0",
            ])

        let report = try ToolHarness.json(try ok("qst-export", [path("run"), "-o", path("adapter"), "--json"]).stdout)
        XCTAssertEqual(report["baseTensorDirectorySHA256"] as? String, try QST4Container(path: model).directorySHA256())
        // The merged file needs no --base either, and carries the same identity.
        _ = try ok("qst-export", [path("adapter"), "--merge", model, "-o", path("tuned.qst4")])

        // Another container of the same shape (other random weights) given as --base contradicts the
        // recorded identity: refused, nothing written.
        let other = path("other.qst4")
        _ = try ok("qst-synthetic", ["tiny", "-o", other, "--seed", "9"])
        let wrong = try ToolHarness.run("qst-export", [path("run"), "-o", path("wrong"), "--base", other])
        XCTAssertEqual(wrong.status, 1, wrong.stderr)
        XCTAssertEqual(wrong.stderr.split(separator: "\n").count, 1, wrong.stderr)
        XCTAssertTrue(wrong.stderr.contains("tensor directory sha256"), wrong.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("wrong")))

        // Without the record (a bare side folder), the error says what to pass.
        try FileManager.default.removeItem(atPath: path("run/base.json"))
        let missing = try ToolHarness.run("qst-export", [path("run"), "-o", path("a0")])
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.stderr.contains("pass --base"), missing.stderr)
    }
}
