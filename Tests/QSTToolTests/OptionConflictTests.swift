import Foundation
import XCTest

/// Options that would be silently ignored are refused with one line and exit 1, before any work:
/// `qst-tune --method lora` with a side folder, `--eval-base`, `--benchmark`, `--block-lr-scale`, `--gate-lr-scale` or `--head-pool`;
/// `--head-pool` without a new classification head; `qst-generate --chat-format` without `--chat`. The model paths need not exist: the refusal comes first.
final class OptionConflictTests: ToolTestCase {
    func refused(_ tool: String, _ args: [String], saying text: String) throws {
        let r = try ToolHarness.run(tool, args)
        XCTAssertEqual(r.status, 1, "\(tool) \(args) should fail: \(r.stderr)")
        XCTAssertTrue(r.stderr.contains(text), "\(tool) \(args): \(r.stderr)")
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("run")), "a refused run left a folder")
    }

    func testLoRARefusesSideOnlyOptions() throws {
        let model = path("missing.qst4"), data = path("missing.jsonl")
        let common = ["--method", "lora", "--data", data, "-o", path("run")]
        try refused("qst-tune", [model, path("side")] + common, saying: "--method lora takes no side network folder")
        try refused("qst-tune", [model, "--eval-base"] + common, saying: "--eval-base is only for --method qst")
        try refused(
            "qst-tune", [model, "--benchmark", "2"] + common, saying: "--benchmark measures the QST side network")
        try refused(
            "qst-tune", [model, "--block-lr-scale", "0.5"] + common, saying: "--block-lr-scale scales the side network")
        try refused(
            "qst-tune", [model, "--gate-lr-scale", "100"] + common, saying: "--gate-lr-scale scales the side network")
        try refused(
            "qst-tune", [model, "--head-pool", "mean"] + common, saying: "--head-pool is for a QST side network")
        // Without the conflicting option the same command gets as far as opening the model.
        let r = try ToolHarness.run("qst-tune", [model] + common)
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("missing"), r.stderr)
    }

    /// `--head-pool` shapes a head only when one is attached: not without `--head classify`, not on resume.
    func testHeadPoolNeedsANewClassificationHead() throws {
        let model = path("missing.qst4"), data = path("missing.tsv")
        try refused(
            "qst-tune",
            [model, path("side"), "--task", "sst2", "--data", data, "-o", path("run"), "--head-pool", "mean"],
            saying: "--head-pool needs --head classify")
        try refused(
            "qst-tune", [model, "--resume", path("old-run"), "--head", "classify", "--head-pool", "mean"],
            saying: "--head-pool cannot change a resumed run's head")
    }

    func testChatFormatNeedsChat() throws {
        try refused(
            "qst-generate", [path("missing.qst4"), "--prompt", "hi", "--chat-format", "chatml"],
            saying: "--chat-format needs --chat")
    }
}
