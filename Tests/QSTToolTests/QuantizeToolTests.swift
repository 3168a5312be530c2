import Foundation
import XCTest
import QSTFormat

/// qst-quantize and qst-inspect as a user runs them.
final class QuantizeToolTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws { dir = try ToolHarness.temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    var golden: String { ToolHarness.repo.appendingPathComponent("Formats/golden/source").path }

    func testQuantizeThenInspect() throws {
        let out = dir.appendingPathComponent("t.qst4").path
        let q = try ToolHarness.run("qst-quantize", [golden, out, "--json"])
        XCTAssertEqual(q.status, 0, q.stderr)
        let s = try ToolHarness.json(q.stdout)
        XCTAssertEqual(s["tensors"] as? Int, 5)
        XCTAssertEqual(s["quantizedTensors"] as? Int, 2)
        XCTAssertGreaterThan(s["meanSQNRDB"] as? Double ?? 0, 10)

        let human = try ToolHarness.run("qst-inspect", [out])
        XCTAssertEqual(human.status, 0, human.stderr)
        XCTAssertTrue(human.stdout.contains("model.layers.0.mlp.up_proj.weight"))
        XCTAssertTrue(human.stdout.contains("NF4"))

        let svg = dir.appendingPathComponent("sqnr.svg").path
        let full = try ToolHarness.run(
            "qst-inspect",
            [
                out, "--errors", golden, "--blocks", "model.layers.0.mlp.up_proj.weight",
                "--verify", "--plot", svg, "--json",
            ])
        XCTAssertEqual(full.status, 0, full.stderr)
        let r = try ToolHarness.json(full.stdout)
        XCTAssertEqual((r["errors"] as? [Any])?.count, 5)
        XCTAssertEqual((r["verification"] as? [Any])?.count, 0)
        let blocks = try XCTUnwrap(r["blocks"] as? [String: Any])
        XCTAssertEqual((blocks["codeHistogram"] as? [Int])?.reduce(0, +), 384)
        XCTAssertTrue(try String(contentsOfFile: svg, encoding: .utf8).contains("<svg"))
    }

    func testHelpHasExamples() throws {
        for tool in ["qst-quantize", "qst-inspect"] {
            let h = try ToolHarness.run(tool, ["--help"])
            XCTAssertEqual(h.status, 0)
            XCTAssertTrue(h.stdout.contains("Examples"), tool)
        }
    }

    func testBadInputGivesOneLineErrorAndNoOutput() throws {
        let out = dir.appendingPathComponent("x.qst4").path
        let missing = try ToolHarness.run("qst-quantize", ["/nonexistent/model", out])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("/nonexistent/model"), missing.stderr)
        XCTAssertEqual(missing.stderr.split(separator: "\n").count, 1, missing.stderr)

        let corrupt = dir.appendingPathComponent("bad.safetensors").path
        try Data([8, 0, 0, 0, 0, 0, 0, 0] + Array("{\"a\":1}".utf8)).write(to: URL(fileURLWithPath: corrupt))
        let r = try ToolHarness.run("qst-quantize", [corrupt, out])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains(corrupt), r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))

        let badOpt = try ToolHarness.run("qst-quantize", [golden, out, "--block-size", "100"])
        XCTAssertNotEqual(badOpt.status, 0)
        XCTAssertTrue(badOpt.stderr.contains("block"), badOpt.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))

        let notQST = try ToolHarness.run("qst-inspect", [corrupt])
        XCTAssertNotEqual(notQST.status, 0)
        XCTAssertTrue(notQST.stderr.contains("bad magic") || notQST.stderr.contains("too short"), notQST.stderr)
    }

    func testVerifyFailsOnFlippedByte() throws {
        let out = dir.appendingPathComponent("t.qst4").path
        XCTAssertEqual(try ToolHarness.run("qst-quantize", [golden, out]).status, 0)
        var d = try Data(contentsOf: URL(fileURLWithPath: out))
        let c = try QST4Container(path: out)
        let codes = try c.entry("model.layers.0.mlp.up_proj.weight").parts["codes"]!
        d[codes.offset] ^= 0xFF
        try d.write(to: URL(fileURLWithPath: out))
        let v = try ToolHarness.run("qst-inspect", [out, "--verify"])
        XCTAssertEqual(v.status, 2)
        XCTAssertTrue(v.stdout.contains("checksum mismatch"), v.stdout)
    }

    /// SIGKILL during the write leaves neither the target nor a temporary file behind.
    func testKilledQuantizeLeavesNoFile() throws {
        let big = dir.appendingPathComponent("big")
        try FileManager.default.createDirectory(at: big, withIntermediateDirectories: true)
        var tensors: [SafetensorsTensorData] = []
        let rows = 2048, cols = 2048
        let pattern = (0..<(rows * cols)).map { Float(($0 * 7919) % 1013) / 1013 - 0.5 }
        for i in 0..<24 {
            tensors.append(
                try .init(name: "model.layers.\(i).mlp.up_proj.weight", shape: [rows, cols], floats: pattern))
        }
        try SafetensorsWriter.write(to: big.appendingPathComponent("model.safetensors").path, tensors: tensors)
        try Data("{}".utf8).write(to: big.appendingPathComponent("config.json"))
        let out = dir.appendingPathComponent("out.qst4").path
        var killed = false
        for delay in [0.25, 0.1, 0.03] where !killed {
            let r = try ToolHarness.run("qst-quantize", [big.path, out], killAfter: delay)
            killed = r.signaled
            if !killed { try? FileManager.default.removeItem(atPath: out) }
        }
        XCTAssertTrue(killed, "qst-quantize finished before it could be killed; make the input larger")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        let left = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0 != "big" }
        XCTAssertEqual(left, [], "files left behind: \(left)")
    }
}
