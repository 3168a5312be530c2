import Foundation
import XCTest
import QSTTestSupport
import QSTFormat

/// The container against code that shares nothing with it: a NumPy reader written from
/// Formats/QST4.md alone, and the NumPy NF4 reference of bitsandbytes' semantics.
final class ContainerReferenceTests: XCTestCase {
    func testSpecReaderDecodesTheGoldenFiles() throws {
        let r = try ReferenceScripts.run(
            "qst4_reader.py", ["--check-golden", ToolHarness.repo.appendingPathComponent("Formats/golden").path])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        let report = try ToolHarness.json(r.stdout)
        XCTAssertEqual((report["mismatches"] as? [Any])?.count, 0)
        XCTAssertEqual((report["files"] as? [String: Any])?.count, 2)
    }

    /// Importing the reader from a program run by another interpreter (here the venv's base Python) keeps
    /// that program's process: only a script run as `__main__` re-executes itself under the venv.
    func testImportingTheReaderDoesNotReexecuteTheInterpreter() throws {
        let base = try ReferenceScripts.run("qst_py/print_base_python.py", [])
        XCTAssertEqual(base.status, 0, base.stderr)
        let interpreter = base.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let code = """
            import os, sys
            sys.path.insert(0, sys.argv[1])
            pid = os.getpid()
            try:
                import qst4_reader
                print("imported")
            except ImportError as e:
                print("import error:", e)
            print("alive", pid == os.getpid())
            """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: interpreter)
        p.arguments = ["-c", code, ToolHarness.repo.appendingPathComponent("Scripts").path]
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let e = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, o + e)
        XCTAssertTrue(o.contains("alive True"), o + e)
    }

    /// Every layer of the real model: packed codes, absmax and double-quantization parts identical
    /// to the bitsandbytes reference, decoded values equal, kept tensors exact.
    func testRealModelContainerIsBitsandbytesEquivalent() throws {
        #if DEBUG
            if ProcessInfo.processInfo.environment["QST_REAL_MODEL_TESTS"] != "1" {
                try TestRequirement.unavailable(
                    "real-model test: release builds only", variable: "QST_REAL_MODEL_TESTS")
            }
        #endif
        let model = try ReferenceScripts.realModelF32()
        let dir = try ToolHarness.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        for (name, dq) in [("dq.qst4", true), ("nodq.qst4", false)] {
            let out = dir.appendingPathComponent(name).path
            var policy = QuantizationPolicy()
            policy.nf4.doubleQuant = dq
            _ = try QST4Quantize(source: model, output: out, policy: policy, createdBy: "test").run()
            let r = try ReferenceScripts.run("nf4_container_check.py", [model, out])
            XCTAssertEqual(r.status, 0, String((r.stdout + r.stderr).prefix(2000)))
            let report = try ToolHarness.json(r.stdout)
            XCTAssertEqual(report["nf4"] as? Int, 210, name)
            XCTAssertEqual(report["tensors_checked"] as? Int, 272, name)
            XCTAssertEqual((report["mismatches"] as? [Any])?.count, 0, name)
        }
    }
}
