import Foundation
import XCTest
import QSTFormat

/// qst-export as a user runs it, on the tiny LLaMA of Scripts/make-tiny-models quantized with qst-quantize.
final class ExportToolTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws { dir = try ToolHarness.temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    /// tiny-llama (QST_TINY_MODELS or the cache), else skip.
    func tinyLlama() throws -> String {
        let env = ProcessInfo.processInfo.environment
        for d in [env["QST_TINY_MODELS"], ReferenceScripts.cache + "/tiny-models"].compactMap({ $0 })
        where FileManager.default.fileExists(atPath: d + "/tiny-llama/model.safetensors") { return d + "/tiny-llama" }
        if env["QST_REQUIRE_REFERENCE"] == "1" { XCTFail("tiny models missing") }
        throw XCTSkip("tiny models missing; run Scripts/make-tiny-models \(ReferenceScripts.cache)/tiny-models")
    }

    func ok(_ tool: String, _ args: [String]) throws -> ToolHarness.Result {
        let r = try ToolHarness.run(tool, args)
        XCTAssertEqual(r.status, 0, "\(tool) \(args): \(r.stderr)")
        return r
    }

    func bytes(_ p: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: p)) }

    func testExportReexportMergeAndRefusals() throws {
        let tiny = try tinyLlama()
        let base = path("base.qst4"), other = path("other.qst4")
        _ = try ok("qst-quantize", [tiny, base])
        _ = try ok("qst-quantize", [tiny, other, "--block-size", "32"])
        _ = try ok("qst-init-side", [base, "-o", path("side"), "--r", "2", "--adapter-hidden", "4"])

        // A side folder does not know its base: the error says what to pass, nothing is written.
        let missing = try ToolHarness.run("qst-export", [path("side"), "-o", path("a0")])
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.stderr.contains("pass --base"), missing.stderr)
        XCTAssertEqual(missing.stderr.split(separator: "\n").count, 1)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("a0")))

        let first = try ok("qst-export", [path("side"), "-o", path("a1"), "--base", base, "--dtype", "bf16", "--json"])
        let report = try ToolHarness.json(first.stdout)
        XCTAssertEqual(report["kind"] as? String, "adapter")
        XCTAssertEqual(report["baseTensorDirectorySHA256"] as? String, try QST4Container(path: base).directorySHA256())
        _ = try ok("qst-export", [path("a1"), "-o", path("a2")])
        for f in ["adapter_model.safetensors", "adapter_config.json"] {
            XCTAssertEqual(try bytes(path("a1/" + f)), try bytes(path("a2/" + f)), f)
        }
        let st = try SafetensorsFile(path: path("a1/adapter_model.safetensors"))
        XCTAssertEqual(st.tensors["model.qst_layers.0.self_attn.q_proj.weight"]?.dtype, .bf16)
        XCTAssertEqual(st.metadata["format"], "qst-adapter-1")

        // Merge: verified by qst-inspect, base tensors untouched.
        _ = try ok("qst-export", [path("a1"), "--merge", base, "-o", path("tuned.qst4")])
        let inspect = try ok("qst-inspect", [path("tuned.qst4"), "--verify"])
        XCTAssertTrue(inspect.stdout.contains("OK"), inspect.stdout)
        XCTAssertEqual(try QST4Container(path: path("tuned.qst4")).directorySHA256(), try QST4Container(path: base).directorySHA256())

        // A different base (other block size: other tensor directory) is refused by name.
        let wrong = try ToolHarness.run("qst-export", [path("a1"), "--merge", other, "-o", path("wrong.qst4")])
        XCTAssertEqual(wrong.status, 1)
        XCTAssertTrue(wrong.stderr.contains("tensor directory sha256"), wrong.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("wrong.qst4")))
        // Merging onto a merged file is refused too.
        let twice = try ToolHarness.run("qst-export", [path("a1"), "--merge", path("tuned.qst4"), "-o", path("twice.qst4")])
        XCTAssertEqual(twice.status, 1)
        XCTAssertTrue(twice.stderr.contains("already has a section 'side'"), twice.stderr)

        for bad in [["--dtype", "f8"], ["--checkpoint", "soon"]] {
            let r = try ToolHarness.run("qst-export", [path("a1"), "-o", path("a3")] + bad)
            XCTAssertEqual(r.status, 1, "\(bad)")
            XCTAssertTrue(r.stderr.hasPrefix("qst-export: error:"), r.stderr)
        }
    }

    func testHelpHasExamples() throws {
        let r = try ok("qst-export", ["--help"])
        XCTAssertTrue(r.stdout.contains("--merge"))
        XCTAssertTrue(r.stdout.contains("qst-export run/ -o adapter/"))
    }
}
