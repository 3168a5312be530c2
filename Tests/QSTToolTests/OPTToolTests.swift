import Foundation
import XCTest
import QSTTestSupport
import QSTFormat

/// The whole QST path on an OPT base as a user runs it: the OPT-350m-like tiny checkpoint of
/// Scripts/make-tiny-models (post-LayerNorm, project_in/out, byte-level tokenizer) quantized, a side network
/// created, tuned on SST-2 lines, exported and merged, then generating beside the base.
final class OPTToolTests: ToolTestCase {
    func tinyOPT() throws -> String {
        let env = ProcessInfo.processInfo.environment
        for d in [env["QST_TINY_MODELS"], ReferenceScripts.cache + "/tiny-models"].compactMap({ $0 })
        where FileManager.default.fileExists(atPath: d + "/tiny-opt-350m/model.safetensors") {
            return d + "/tiny-opt-350m"
        }
        try TestRequirement.unavailable(
            "tiny OPT model missing; run Scripts/make-tiny-models \(ReferenceScripts.cache)/tiny-models")
    }

    func testInitTuneExportGenerateOnTinyOPT() throws {
        let tiny = try tinyOPT(), base = path("base.qst4")
        let data = ToolHarness.repo.appendingPathComponent("Scripts/data/sst2").path
        _ = try ok("qst-quantize", [tiny, base])
        XCTAssertEqual(try QST4Container(path: base).entry("model.decoder.project_out.weight").dtype, .nf4)

        let initReport = try ToolHarness.json(
            try ok("qst-init-side", [base, "-o", path("side"), "--r", "4", "--init", "reference", "--json"]).stdout)
        let dims = (initReport["config"] as? [String: Any])?["base"] as? [String: Any]
        XCTAssertEqual(dims?["modelFamily"] as? String, "opt")
        XCTAssertEqual(dims?["headInputSize"] as? Int, 32)
        // The base's parameters as counted from the checkpoint itself (learned positions are not counted).
        let file = try SafetensorsFile(path: tiny + "/model.safetensors")
        let counted = file.tensors.filter { !$0.key.contains("embed_positions") }.values.reduce(0) {
            $0 + $1.shape.reduce(1, *)
        }
        XCTAssertEqual(initReport["baseParameters"] as? Int, counted)

        let tune = try ToolHarness.json(
            try ok(
                "qst-tune",
                [
                    base, path("side"), "--task", "sst2", "--data", data + "/train.tsv", "--eval", data + "/dev.tsv",
                    "-o", path("run"),
                    "--steps", "4", "--train-limit", "32", "--eval-limit", "16", "--batch-size", "4", "--max-length",
                    "48",
                    "--json",
                ]
            ).stdout)
        XCTAssertEqual(tune["steps"] as? Int, 4)
        XCTAssertTrue((tune["lastTrainLoss"] as? Double ?? .nan).isFinite)
        let before = try SafetensorsFile(path: path("side/side.safetensors"))
        let after = try SafetensorsFile(path: path("run/final/side.safetensors"))
        let name = "model.decoder.qst_layers.0.fc1.weight"
        XCTAssertNotEqual(try before.floats(name), try after.floats(name), "training changed the OPT side blocks")

        // Export: reference names, the head gate in the reference's convention (negated).
        _ = try ok("qst-export", [path("run"), "-o", path("adapter"), "--base", base, "--checkpoint", "last"])
        let config = try ToolHarness.json(
            try String(contentsOfFile: path("adapter/adapter_config.json"), encoding: .utf8))
        XCTAssertEqual(config["tensor_names"] as? String, "QSTOPTForCausalLM.state_dict")
        let exported = try SafetensorsFile(path: path("adapter/adapter_model.safetensors"))
        XCTAssertEqual(try exported.floats("lm_head_z"), try after.floats("lm_head_z").map { -$0 })
        XCTAssertEqual(try exported.floats(name), try after.floats(name))

        let prompt = ["--prompt", "Review: great", "--max-tokens", "6", "--json"]
        let tuned = try ToolHarness.json(try ok("qst-generate", [base, "--side", path("adapter")] + prompt).stdout)
        let plain = try ToolHarness.json(try ok("qst-generate", [base] + prompt).stdout)
        XCTAssertEqual((tuned["tokens"] as? [Int])?.count, 6)
        XCTAssertNotEqual(tuned["tokens"] as? [Int], plain["tokens"] as? [Int], "the side network changes the output")
        _ = try ok("qst-export", [path("adapter"), "--merge", base, "-o", path("tuned.qst4")])
        let merged = try ToolHarness.json(try ok("qst-generate", [path("tuned.qst4")] + prompt).stdout)
        XCTAssertEqual(merged["tokens"] as? [Int], tuned["tokens"] as? [Int], "merged file = base + adapter")

        // LoRA trains through LLaMA blocks only: refused with one line.
        let lora = try ToolHarness.run(
            "qst-tune",
            [
                base, "--method", "lora", "--task", "sst2", "--data", data + "/train.tsv",
                "-o", path("lora"), "--steps", "1",
            ])
        XCTAssertEqual(lora.status, 1)
        XCTAssertTrue(lora.stderr.contains("LLaMA family only"), lora.stderr)
    }
}
