import Foundation
import XCTest
import QSTTestSupport
import QSTFormat

/// qst-export as a user runs it, on the tiny LLaMA of Scripts/make-tiny-models quantized with qst-quantize.
final class ExportToolTests: ToolTestCase {
    /// tiny-llama (QST_TINY_MODELS or the cache), else skip.
    func tinyLlama() throws -> String {
        let env = ProcessInfo.processInfo.environment
        for d in [env["QST_TINY_MODELS"], ReferenceScripts.cache + "/tiny-models"].compactMap({ $0 })
        where FileManager.default.fileExists(atPath: d + "/tiny-llama/model.safetensors") { return d + "/tiny-llama" }
        try TestRequirement.unavailable(
            "tiny models missing; run Scripts/make-tiny-models \(ReferenceScripts.cache)/tiny-models")
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
        XCTAssertEqual(
            try QST4Container(path: path("tuned.qst4")).directorySHA256(),
            try QST4Container(path: base).directorySHA256())

        // A different base (other block size: other tensor directory) is refused by name.
        let wrong = try ToolHarness.run("qst-export", [path("a1"), "--merge", other, "-o", path("wrong.qst4")])
        XCTAssertEqual(wrong.status, 1)
        XCTAssertTrue(wrong.stderr.contains("tensor directory sha256"), wrong.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("wrong.qst4")))
        // Merging onto a merged file is refused too.
        let twice = try ToolHarness.run(
            "qst-export", [path("a1"), "--merge", path("tuned.qst4"), "-o", path("twice.qst4")])
        XCTAssertEqual(twice.status, 1)
        XCTAssertTrue(twice.stderr.contains("already has a section 'side'"), twice.stderr)

        for bad in [["--dtype", "f8"], ["--checkpoint", "soon"]] {
            let r = try ToolHarness.run("qst-export", [path("a1"), "-o", path("a3")] + bad)
            XCTAssertEqual(r.status, 1, "\(bad)")
            XCTAssertTrue(r.stderr.hasPrefix("qst-export: error:"), r.stderr)
        }
    }

    /// SmolLM2 (it has a tokenizer and a chat template): qst-generate with an adapter, with the merged file
    /// alone, with two adapters at once; qst-eval ppl with the adapter. Slow unoptimised: release builds,
    /// or debug with QST_REAL_MODEL_TESTS=1.
    func testGenerateAndEvaluateWithAdapterOrMergedFile() throws {
        try requireRealModelBuild()
        let folder = try ReferenceScripts.realModelF32()
        let base = path("smollm2.qst4")
        _ = try ok("qst-quantize", [folder, base])
        // The reference init: a random head mix, so an untrained side network changes the output.
        _ = try ok("qst-init-side", [base, "-o", path("side1"), "--seed", "1", "--init", "reference", "--r", "16"])
        _ = try ok("qst-init-side", [base, "-o", path("side2"), "--seed", "2", "--init", "reference", "--r", "16"])
        _ = try ok("qst-export", [path("side1"), "-o", path("a1"), "--base", base])
        _ = try ok("qst-export", [path("side2"), "-o", path("a2"), "--base", base])
        _ = try ok("qst-export", [path("a1"), "--merge", base, "-o", path("tuned.qst4")])

        let chat = ["--chat", "--prompt", "What is the capital of France?", "--max-tokens", "48", "--json"]
        let withAdapter = try ToolHarness.json(try ok("qst-generate", [base, "--side", path("a1")] + chat).stdout)
        let merged = try ToolHarness.json(try ok("qst-generate", [path("tuned.qst4")] + chat).stdout)
        let plain = try ToolHarness.json(try ok("qst-generate", [base] + chat).stdout)
        XCTAssertEqual(withAdapter["tokens"] as? [Int], merged["tokens"] as? [Int], "merged file = base + adapter")
        XCTAssertNotEqual(
            withAdapter["tokens"] as? [Int], plain["tokens"] as? [Int], "the side network changes the output")
        // ChatML's end token <|im_end|> (id 2) ends the answer.
        if withAdapter["stopReason"] as? String == "eos" { XCTAssertEqual((withAdapter["tokens"] as? [Int])?.last, 2) }
        XCTAssertTrue((withAdapter["prompt"] as? String ?? "").contains("<|im_start|>assistant"))

        // Two adapters in one process: each continuation equals that adapter's alone.
        let greedy = ["--prompt", "Once upon a time", "--max-tokens", "12", "--json"]
        let both = try XCTUnwrap(
            try JSONSerialization.jsonObject(
                with: Data(
                    try ok("qst-generate", [base, "--side", path("a1"), "--side", path("a2")] + greedy).stdout.utf8))
                as? [[String: Any]])
        let alone2 = try ToolHarness.json(try ok("qst-generate", [base, "--side", path("a2")] + greedy).stdout)
        XCTAssertEqual(both.count, 2)
        XCTAssertEqual(both[1]["tokens"] as? [Int], alone2["tokens"] as? [Int])

        let text = path("text.txt")
        try String(repeating: "The quick brown fox jumps over the lazy dog. ", count: 20).write(
            toFile: text, atomically: true, encoding: .utf8)
        let ppl = try ToolHarness.json(
            try ok(
                "qst-eval",
                [
                    "ppl", path("tuned.qst4"), "--side", path("a2"), "--text", text,
                    "--ctx", "64", "--json",
                ]
            ).stdout)
        let sides = try XCTUnwrap(ppl["sides"] as? [[String: Any]])
        XCTAssertEqual(sides.count, 2, "the merged file's own side network and --side")
        XCTAssertTrue(sides.allSatisfy { ($0["perplexity"] as? Double ?? 0) > 1 })
    }

    func testHelpHasExamples() throws {
        let r = try ok("qst-export", ["--help"])
        XCTAssertTrue(r.stdout.contains("--merge"))
        XCTAssertTrue(r.stdout.contains("qst-export run/ -o adapter/"))
    }
}
