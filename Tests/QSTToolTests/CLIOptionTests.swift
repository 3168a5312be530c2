import Foundation
import XCTest

/// The options the tools share and the enum options: a value outside an option's choices is one line naming
/// the option and every valid value (exit 1, before any work), and `--help` prose is written as unwrapped
/// paragraphs, so the parser reflows it to the terminal instead of breaking pre-wrapped lines raggedly.
/// No model is needed: the refusals come before any file is opened.
final class CLIOptionTests: ToolTestCase {
    /// `tool args` must fail with exit 1 and exactly one stderr line that names `option` and lists `values`.
    func rejected(_ tool: String, _ args: [String], option: String, values: [String]) throws {
        let r = try ToolHarness.run(tool, args)
        XCTAssertEqual(r.status, 1, "\(tool) \(args): \(r.stderr)")
        let lines = r.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, "\(tool) \(args): \(r.stderr)")
        let line = String(lines.first ?? "")
        XCTAssertTrue(line.hasPrefix("\(tool): error: "), line)
        XCTAssertTrue(line.contains("'\(option) <"), "\(line) should name \(option)")
        for v in values { XCTAssertTrue(line.contains("'\(v)'"), "\(line) should list \(v)") }
        XCTAssertEqual(r.stdout, "", "\(tool) \(args) printed on stdout")
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("out")), "\(tool) \(args) wrote its output")
    }

    func testEnumOptionsRejectBadValuesInOneLine() throws {
        let model = path("missing.qst4"), out = path("out")
        try rejected(
            "qst-quantize", [path("missing"), out, "--dtype", "f8"], option: "--dtype", values: ["bf16", "f16", "f32"])
        try rejected(
            "qst-export", [path("run"), "-o", out, "--dtype", "f64"], option: "--dtype", values: ["f32", "bf16", "f16"])
        try rejected(
            "qst-init-side", [model, "-o", out, "--downsample", "conv"], option: "--downsample",
            values: ["adapter", "linear", "avgpool", "maxpool"])
        try rejected(
            "qst-init-side", [model, "-o", out, "--activation", "tanh"], option: "--activation",
            values: ["swish", "gelu", "relu"])
        try rejected(
            "qst-init-side", [model, "-o", out, "--init", "zero"], option: "--init",
            values: ["reference", "base", "base-pruned"])
        try rejected(
            "qst-init-side", [model, "-o", out, "--gate-init", "open"], option: "--gate-init",
            values: ["reference", "running-mean"])
        try rejected(
            "qst-eval", ["ppl", model, "--text", path("t.txt"), "--matmul", "fast"], option: "--matmul",
            values: ["sgemm", "exact", "auto"])
        try rejected(
            "qst-generate", [model, "--prompt", "hi", "--matmul", "fast"], option: "--matmul",
            values: ["sgemm", "exact", "auto"])
        let tune = [model, path("side"), "--data", path("d.jsonl"), "-o", out]
        try rejected("qst-tune", tune + ["--head", "pool"], option: "--head", values: ["lm", "classify"])
        try rejected("qst-tune", tune + ["--head-pool", "max"], option: "--head-pool", values: ["last", "mean"])
        try rejected("qst-tune", tune + ["--method", "dora"], option: "--method", values: ["qst", "lora"])
        try rejected("qst-tune", tune + ["--preset", "chat"], option: "--preset", values: ["glue", "instruct"])
        try rejected(
            "qst-tune", tune + ["--schedule", "step"], option: "--schedule", values: ["constant", "linear", "cosine"])
        try rejected("qst-tune", tune + ["--matmul", "fast"], option: "--matmul", values: ["sgemm", "exact", "auto"])
        try rejected(
            "qst-tune", tune + ["--best-metric", "f1"], option: "--best-metric", values: ["accuracy", "loss"])
    }

    /// A valid value passes the parser: the run gets as far as the missing model (`--dtype` ignores case, as before).
    func testValidValuesReachTheWork() throws {
        let missing = path("missing")
        for (tool, args) in [
            ("qst-quantize", [missing, path("out"), "--dtype", "BF16"]),
            (
                "qst-tune",
                [
                    missing, path("side"), "--data", path("d.jsonl"), "-o", path("out"),
                    "--head", "classify", "--schedule", "cosine", "--threads", "1", "--matmul", "exact",
                    "--head-pool", "mean", "--block-lr-scale", "0.25", "--gate-lr-scale", "100",
                    "--best-metric", "loss",
                ]
            ),
        ] {
            let r = try ToolHarness.run(tool, args)
            XCTAssertEqual(r.status, 1, "\(tool) \(args): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(missing), "\(tool) \(args) should fail on the missing file: \(r.stderr)")
        }
    }

    /// Every tool's help has examples, and, printed wide, each prose paragraph of its overview is one line:
    /// two unindented lines in a row would be a paragraph broken by hand, which a narrower terminal re-wraps
    /// into ragged lines. Indented lines are examples, kept as written: they fit 80 columns.
    func testHelpHasExamplesAndUnwrappedParagraphs() throws {
        let commands: [(tool: String, args: [String])] = [
            ("qst-quantize", []), ("qst-inspect", []), ("qst-init-side", []), ("qst-tune", []), ("qst-export", []),
            ("qst-eval", []), ("qst-eval", ["glue"]), ("qst-generate", []), ("qst-serve", []), ("qst-synthetic", []),
        ]
        for (tool, sub) in commands {
            let r = try ToolHarness.run(tool, sub + ["--help"], environment: ["COLUMNS": "2000"])
            XCTAssertEqual(r.status, 0, "\(tool) \(sub): \(r.stderr)")
            XCTAssertTrue(r.stdout.contains("\n  \(tool) "), "\(tool) \(sub) --help has no example command")
            guard let start = r.stdout.range(of: "OVERVIEW:"), let end = r.stdout.range(of: "\nUSAGE:") else {
                XCTFail("\(tool) \(sub) --help: no OVERVIEW/USAGE"); continue
            }
            // The overview after its first line (the abstract, which follows "OVERVIEW:").
            let lines = r.stdout[start.upperBound..<end.lowerBound].split(
                separator: "\n", omittingEmptySubsequences: false
            ).dropFirst()
            for (a, b) in zip(lines, lines.dropFirst())
            where !a.isEmpty && !b.isEmpty && a.first != " " && b.first != " " {
                XCTFail("\(tool) \(sub) --help: a paragraph is wrapped by hand:\n\(a)\n\(b)")
            }
            for line in lines where line.first == " " && line.count > 80 {
                XCTFail("\(tool) \(sub) --help: an example wider than 80 columns:\n\(line)")
            }
        }
    }

    /// The shared groups give every engine-running tool the same options.
    func testEngineToolsShareModelJSONAndEngineOptions() throws {
        for (tool, sub) in [
            ("qst-eval", ["ppl"]), ("qst-eval", ["glue"]), ("qst-generate", []), ("qst-tune", []), ("qst-serve", []),
        ] {
            let help = try ok(tool, sub + ["--help"]).stdout
            for option in ["<model>", "--threads", "--matmul", "--resident-budget"] {
                XCTAssertTrue(help.contains(option), "\(tool) \(sub) --help lacks \(option)")
            }
            if tool != "qst-serve" { XCTAssertTrue(help.contains("--json"), "\(tool) \(sub) --help lacks --json") }
        }
    }
}
