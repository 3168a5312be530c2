import Foundation
import XCTest
import QSTFormat

/// qst-tune --head classify, qst-export and qst-eval glue as a user runs them, on SmolLM2 (it has a
/// tokenizer) with a dozen SST-2-format sentences. Release builds, or debug with QST_REAL_MODEL_TESTS=1.
final class GLUEToolTests: ToolTestCase {
    func fails(_ tool: String, _ args: [String], saying text: String) throws {
        let r = try ToolHarness.run(tool, args)
        XCTAssertEqual(r.status, 1, "\(tool) \(args) should fail")
        XCTAssertTrue(r.stderr.contains(text), "\(tool) \(args): \(r.stderr)")
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
    }

    func testClassificationHeadFromTuneToEval() throws {
        try requireRealModelBuild()
        let base = path("smollm2.qst4")
        _ = try ok("qst-quantize", [try ReferenceScripts.realModelF32(), base])
        _ = try ok("qst-init-side", [base, "-o", path("side"), "--r", "16"])
        let sentences = [
            "a gorgeous , witty film ", "dull and lifeless ", "a triumph of style ", "painfully boring ",
            "warm and funny ", "an ugly mess ", "beautifully acted ", "tedious from start to finish ",
        ]
        let tsv =
            "sentence\tlabel\n" + sentences.enumerated().map { "\($1)\t\(1 - $0 % 2)" }.joined(separator: "\n") + "\n"
        try tsv.write(toFile: path("train.tsv"), atomically: true, encoding: .utf8)
        let common = ["--task", "sst2", "--data", path("train.tsv"), "--steps", "2", "--batch-size", "4"]

        let tuned = try ToolHarness.json(
            try ok(
                "qst-tune",
                [
                    base, path("side"), "--head", "classify", "--eval", path("train.tsv"),
                    "-o", path("run"), "--json",
                ] + common
            ).stdout)
        XCTAssertEqual(tuned["steps"] as? Int, 2)
        let eval = try XCTUnwrap(tuned["finalEval"] as? [String: Any])
        XCTAssertNotNil(eval["accuracy"] as? Double)
        let config = try String(contentsOfFile: path("run/final/side_config.json"), encoding: .utf8)
        XCTAssertTrue(config.contains("\"numLabels\" : 2"), config)

        _ = try ok("qst-export", [path("run"), "-o", path("adapter"), "--base", base])
        let st = try SafetensorsFile(path: path("adapter/adapter_model.safetensors"))
        XCTAssertEqual(st.tensors["score.weight"]?.shape, [2, 576])
        XCTAssertEqual(st.tensors["score.bias"]?.shape, [2])

        let withHead = try ToolHarness.json(
            try ok(
                "qst-eval",
                [
                    "glue", base, "--task", "sst2", "--data", path("train.tsv"),
                    "--side", path("adapter"), "--json",
                ]
            ).stdout)
        XCTAssertEqual(withHead["mode"] as? String, "classification-head")
        XCTAssertEqual(withHead["examples"] as? Int, 8)
        XCTAssertEqual(withHead["goldCounts"] as? [Int], [4, 4])
        // The tool's accuracy is the trainer's on the same file and weights (run/final = the exported best).
        let metrics = try XCTUnwrap(withHead["metrics"] as? [String: Double])
        XCTAssertEqual(metrics["accuracy"] ?? -1, eval["accuracy"] as? Double ?? -2, accuracy: 1e-9)

        let words = try ToolHarness.json(
            try ok(
                "qst-eval",
                [
                    "glue", base, "--task", "mrpc", "--data", path("mrpc.tsv"),
                    "--json",
                ], mrpc: true
            ).stdout)
        XCTAssertEqual(words["mode"] as? String, "label-words")
        XCTAssertEqual(words["officialMetrics"] as? [String], ["f1", "accuracy"])
        XCTAssertNotNil((words["metrics"] as? [String: Double])?["f1"])

        try fails(
            "qst-tune", [base, "--method", "lora", "--head", "classify", "-o", path("lora")] + common,
            saying: "QST side network only")
        try fails(
            "qst-tune", [base, path("side"), "--head", "classify", "--num-labels", "1", "-o", path("r1")] + common,
            saying: "regression")
        try fails(
            "qst-tune", [base, path("side"), "--head", "pool", "-o", path("r2")] + common,
            saying: "'--head <head>'. Please provide one of 'lm' and 'classify'.")
        try fails("qst-eval", ["glue", base, "--task", "qnli", "--data", path("train.tsv")], saying: "unknown task")
    }

    /// Writes a two-pair MRPC file (with the byte-order mark the GLUE files have) when asked, then runs.
    func ok(_ tool: String, _ args: [String], mrpc: Bool) throws -> ToolHarness.Result {
        if mrpc {
            let text =
                "\u{FEFF}Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
                + "1\t1\t2\tThe cat sat on the mat.\tA cat was sitting on the mat.\n"
                + "0\t3\t4\tStocks fell sharply today.\tThe weather was sunny in Paris.\n"
            try text.write(toFile: path("mrpc.tsv"), atomically: true, encoding: .utf8)
        }
        return try ok(tool, args)
    }
}
