import Foundation
import XCTest

/// The Python scripts' log reader (Scripts/qst_py/jsonl.py, used by bench-cache, bench-paper, bench_scale):
/// a trailing half line from a killed or still-running qst-tune is skipped, a malformed whole line is an error.
final class JSONLReaderTests: ToolTestCase {
    func testPythonReaderSkipsTrailingPartialLine() throws {
        let log = path("log.jsonl")
        try (#"{"kind": "train", "step": 1}"# + "\n" + #"{"kind": "eval", "step": 2}"# + "\n" + #"{"kind": "tr"#)
            .write(toFile: log, atomically: true, encoding: .utf8)
        let code = """
            import sys
            sys.path.insert(0, sys.argv[1])
            from qst_py.jsonl import read_jsonl
            print([e["step"] for e in read_jsonl(sys.argv[2])], [e["step"] for e in read_jsonl(sys.argv[2], kind="train")])
            """
        let r = try runPython(code, log)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "[1, 2] [1]")

        try (#"{"kind": "train""# + "\n" + #"{"kind": "eval", "step": 2}"# + "\n").write(
            toFile: log, atomically: true, encoding: .utf8)
        let bad = try runPython(code, log)
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("log.jsonl:1"), bad.stderr)
    }

    func runPython(_ code: String, _ file: String) throws -> ReferenceScripts.Output {
        try ReferenceScripts.runPython(["-c", code, ToolHarness.repo.appendingPathComponent("Scripts").path, file])
    }
}
