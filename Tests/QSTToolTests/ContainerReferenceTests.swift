import Foundation
import XCTest
import QSTTestSupport
import QSTFormat

/// The container against code that shares nothing with it: a NumPy reader written from
/// Formats/QST4.md alone, and the NumPy NF4 reference of bitsandbytes' semantics.
final class ContainerReferenceTests: XCTestCase {
    func testSpecReaderDecodesTheGoldenFiles() throws {
        let r = try ReferenceScripts.run("qst4_reader.py", ["--check-golden", ToolHarness.repo.appendingPathComponent("Formats/golden").path])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        let report = try ToolHarness.json(r.stdout)
        XCTAssertEqual((report["mismatches"] as? [Any])?.count, 0)
        XCTAssertEqual((report["files"] as? [String: Any])?.count, 2)
    }

    /// Every layer of the real model: packed codes, absmax and double-quantization parts identical
    /// to the bitsandbytes reference, decoded values equal, kept tensors exact.
    func testRealModelContainerIsBitsandbytesEquivalent() throws {
        #if DEBUG
        if ProcessInfo.processInfo.environment["QST_REAL_MODEL_TESTS"] != "1" { try TestRequirement.unavailable("real-model test: release builds only", variable: "QST_REAL_MODEL_TESTS") }
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
