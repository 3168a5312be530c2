import Foundation
import XCTest
import QSTFormat

/// `qst-quantize --search` and `--calibrate` as a user runs them: the file stays plain NF4 that the independent
/// NumPy reader decodes, carries the calibration's metadata, and a bad calibration text is a one-line error.
final class CalibrationToolTests: ToolTestCase {
    var golden: String { ToolHarness.repo.appendingPathComponent("Formats/golden/source").path }

    func testSearchKeepsTheFormatAndMarksTheTensors() throws {
        let plain = path("plain.qst4"), searched = path("searched.qst4")
        try ok("qst-quantize", [golden, plain])
        let r = try ok("qst-quantize", [golden, searched, "--search", "--json"])
        let report = try ToolHarness.json(r.stdout)
        XCTAssertEqual(report["scaleSearch"] as? String, "mse")
        let c = try QST4Container(path: searched), p = try QST4Container(path: plain)
        XCTAssertEqual(c.header.quantization?.scaleSearch, "mse")
        XCTAssertNil(p.header.quantization?.scaleSearch)
        let nf4 = c.header.tensors.filter { $0.dtype == .nf4 }
        XCTAssertEqual(nf4.count, 2)
        for e in nf4 {
            XCTAssertEqual(e.scaleSearch, "mse")
            XCTAssertNil(e.calibrationSHA256)
            // Same parts and sizes as the plain file: only the bytes of codes and scales differ.
            let pe = try p.entry(e.name)
            XCTAssertEqual(e.parts.mapValues(\.length), pe.parts.mapValues(\.length))
            try assertNumPyReaderDecodes(searched, tensor: e.name, container: c)
        }
    }

    func testCalibrationOnTheRealModel() throws {
        try requireRealModelBuild()
        let model = try ReferenceScripts.realModelF32()
        let text = path("calib.txt")
        let sample = String(repeating: "The quick brown fox jumps over the lazy dog near the river bank. ", count: 20)
        try Data(sample.utf8).write(to: URL(fileURLWithPath: text))
        let out = path("calibrated.qst4")
        let r = try ok(
            "qst-quantize",
            [
                model, out, "--calibrate", text, "--calibrate-tokens", "96",
                "--calibrate-ctx", "48", "--json",
            ])
        let report = try ToolHarness.json(r.stdout)
        let cal = try XCTUnwrap(report["calibration"] as? [String: Any])
        let sha = Checksums.sha256Hex(Data(sample.utf8))
        XCTAssertEqual(cal["tokens"] as? Int, 96)
        XCTAssertEqual(cal["linears"] as? Int, 210)
        XCTAssertEqual(cal["sha256"] as? String, sha)
        XCTAssertEqual(report["scaleSearch"] as? String, "weighted-mse")
        let c = try QST4Container(path: out)
        XCTAssertEqual(c.header.quantization?.calibration?.sha256, sha)
        XCTAssertEqual(c.header.quantization?.calibration?.tokens, 96)
        let nf4 = c.header.tensors.filter { $0.dtype == .nf4 }
        XCTAssertEqual(nf4.count, 210)
        for e in nf4 {
            XCTAssertEqual(e.scaleSearch, "weighted-mse", e.name)
            XCTAssertEqual(e.calibrationSHA256, sha, e.name)
        }
        try assertNumPyReaderDecodes(out, tensor: "model.layers.3.mlp.down_proj.weight", container: c)
    }

    /// `--method gptq`: every linear marked "gptq" with the calibration's SHA-256, same parts and sizes as plain
    /// NF4, decoded by the independent NumPy reader.
    func testGPTQOnTheRealModel() throws {
        try requireRealModelBuild()
        let model = try ReferenceScripts.realModelF32()
        let text = path("calib.txt")
        let sample = String(
            repeating: "A small boat drifted slowly past the old mill while the children watched. ", count: 20)
        try Data(sample.utf8).write(to: URL(fileURLWithPath: text))
        let out = path("gptq.qst4")
        let r = try ok(
            "qst-quantize",
            [
                model, out, "--calibrate", text, "--calibrate-tokens", "96",
                "--calibrate-ctx", "48", "--method", "gptq", "--json",
            ])
        let report = try ToolHarness.json(r.stdout)
        XCTAssertEqual(report["scaleSearch"] as? String, "gptq")
        let sha = Checksums.sha256Hex(Data(sample.utf8))
        let c = try QST4Container(path: out)
        XCTAssertEqual(c.header.quantization?.scaleSearch, "gptq")
        XCTAssertEqual(c.header.quantization?.calibration?.sha256, sha)
        let nf4 = c.header.tensors.filter { $0.dtype == .nf4 }
        XCTAssertEqual(nf4.count, 210)
        for e in nf4 {
            XCTAssertEqual(e.scaleSearch, "gptq", e.name)
            XCTAssertEqual(e.calibrationSHA256, sha, e.name)
            XCTAssertEqual(e.doubleQuant, true, e.name)
        }
        try assertNumPyReaderDecodes(out, tensor: "model.layers.5.mlp.down_proj.weight", container: c)
        try assertNumPyReaderDecodes(out, tensor: "model.layers.0.self_attn.k_proj.weight", container: c)
    }

    func testGPTQWithoutCalibrationIsOneLineError() throws {
        let out = path("x.qst4")
        let r = try ToolHarness.run("qst-quantize", [golden, out, "--method", "gptq"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("--calibrate"), r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }

    func testBadCalibrationTextIsOneLineError() throws {
        let out = path("x.qst4")
        let binary = path("binary.txt")
        try Data([0xFF, 0xFE, 0xC3, 0x28, 0x80]).write(to: URL(fileURLWithPath: binary))
        for bad in [path("missing.txt"), dir.path, binary] {
            let r = try ToolHarness.run("qst-quantize", [golden, out, "--calibrate", bad])
            XCTAssertNotEqual(r.status, 0, bad)
            XCTAssertTrue(r.stderr.contains(bad), r.stderr)
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        }
    }

    /// Scripts/qst4_reader.py (written from Formats/QST4.md alone) verifies the file and decodes `tensor` to the
    /// same bits as the Swift reader.
    func assertNumPyReaderDecodes(_ file: String, tensor: String, container: QST4Container) throws {
        let v = try ReferenceScripts.run("qst4_reader.py", [file, "--verify"])
        XCTAssertEqual(v.status, 0, v.stdout + v.stderr)
        let npy = path("t-\(UUID().uuidString).npy")
        let t = try ReferenceScripts.run("qst4_reader.py", [file, "--tensor", tensor, "--out", npy])
        XCTAssertEqual(t.status, 0, t.stderr)
        let data = try Data(contentsOf: URL(fileURLWithPath: npy))
        let e = try container.entry(tensor)
        let n = e.elementCount
        let theirs: [Float] = data.suffix(n * 4).withUnsafeBytes { raw in
            (0..<n).map { raw.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) }
        }
        XCTAssertEqual(theirs, try container.floats(tensor), tensor)
    }
}
