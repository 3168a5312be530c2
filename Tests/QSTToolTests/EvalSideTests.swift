import Foundation
import XCTest

/// `qst-eval compare` and `choice` with `--side` (and `choice` with `--lora`): a trained side network or LoRA
/// adapter changes the result; without one the result is the base's (compare against itself on the exact path:
/// KL exactly 0).
final class EvalSideTests: ToolTestCase {
    /// The synthetic model (one token per byte) and a side network trained at a high rate to answer "C" after
    /// "Answer:", so its output — and its multiple-choice answers — are not the base's.
    func trainedSide() throws -> (model: String, side: String) {
        let f = BadInputFixtures(dir: dir)
        let model = try f.synthetic, side = try f.syntheticSide
        let words = ["the", "cat", "sat", "on", "a", "mat", "and", "ran", "off", "to", "see", "what", "was", "there"]
        var lines = ""
        for i in 0..<16 {
            let q = (0..<6).map { words[($0 * 5 + i) % words.count] }.joined(separator: " ")
            lines += "{\"prompt\": \"\(q)\\nA. mat\\nB. hat\\nC. off\\nD. there\\nAnswer:\", \"completion\": \"C\"}\n"
        }
        try lines.write(toFile: path("train.jsonl"), atomically: true, encoding: .utf8)
        try ok(
            "qst-tune",
            [
                model, side, "-o", path("run"), "--data", path("train.jsonl"), "--steps", "20", "--lr", "0.05",
                "--batch-size", "4", "--max-length", "64", "--preset", "instruct", "--eval-every", "0",
            ])
        return (model, path("run/final"))
    }

    /// LoRA adapters trained on the same records (after `trainedSide`, which writes them).
    func trainedLoRA(_ model: String) throws -> String {
        try ok(
            "qst-tune",
            [
                model, "--method", "lora", "-o", path("lora"), "--data", path("train.jsonl"), "--steps", "20",
                "--lr", "0.01", "--batch-size", "4", "--max-length", "64", "--preset", "instruct", "--eval-every", "0",
            ])
        return path("lora/final")
    }

    func testCompareAndChoiceHonourSide() throws {
        let (model, side) = try trainedSide()
        try "The cat sat on the mat and ran off to see what was there. A cat, a mat, a hat.\n"
            .write(toFile: path("text.txt"), atomically: true, encoding: .utf8)
        let compare = [
            model, "--against", model, "--text", path("text.txt"), "--ctx", "16", "--matmul", "exact", "--json",
        ]
        let base = try ToolHarness.json(try ok("qst-eval", ["compare"] + compare).stdout)
        let tuned = try ToolHarness.json(try ok("qst-eval", ["compare"] + compare + ["--side", side]).stdout)
        XCTAssertEqual(base["meanKL"] as? Double, 0, "without --side the model is the reference itself")
        XCTAssertEqual(base["perplexity"] as? Double, base["referencePerplexity"] as? Double)
        XCTAssertGreaterThan(tuned["meanKL"] as? Double ?? 0, 1e-4, "the side network does not change compare")
        XCTAssertNotEqual(tuned["perplexity"] as? Double, tuned["referencePerplexity"] as? Double)

        // Eight questions of one subject, answers A-D as single letters.
        for split in ["dev", "test"] {
            try FileManager.default.createDirectory(atPath: path("mmlu/\(split)"), withIntermediateDirectories: true)
            var csv = "question,choice0,choice1,choice2,choice3,answer\n"
            for i in 0..<(split == "dev" ? 2 : 12) {
                csv += "what was the cat \(i) on,the mat,a hat,off,there,\(i % 4)\n"
            }
            try csv.write(toFile: path("mmlu/\(split)/toy_\(split).csv"), atomically: true, encoding: .utf8)
        }
        let choice = ["choice", model, "--mmlu", path("mmlu"), "--shots", "1", "--matmul", "exact", "--json"]
        func predictions(_ r: [String: Any]) -> [Int] {
            ((r["subjects"] as? [[String: Any]])?.first?["predictions"] as? [Int]) ?? []
        }
        let plain = try ToolHarness.json(try ok("qst-eval", choice).stdout)
        let again = try ToolHarness.json(try ok("qst-eval", choice).stdout)
        let withSide = try ToolHarness.json(try ok("qst-eval", choice + ["--side", side]).stdout)
        XCTAssertEqual(predictions(plain).count, 12)
        XCTAssertEqual(predictions(plain), predictions(again))
        XCTAssertEqual(predictions(withSide).count, 12)
        XCTAssertNotEqual(predictions(withSide), predictions(plain), "the side network does not change choice")
        XCTAssertEqual(
            predictions(withSide), Array(repeating: 2, count: 12), "the side network was trained to answer C")
        // The shots are run once per subject, unless --no-reuse-prefix; the answers do not change.
        let plainWhole = try ToolHarness.json(try ok("qst-eval", choice + ["--no-reuse-prefix"]).stdout)
        let sideWhole = try ToolHarness.json(try ok("qst-eval", choice + ["--side", side, "--no-reuse-prefix"]).stdout)
        XCTAssertEqual(predictions(plainWhole), predictions(plain))
        XCTAssertEqual(predictions(sideWhole), predictions(withSide))
        for r in [plain, withSide] { XCTAssertGreaterThan(r["tokensReused"] as? Int ?? 0, 11 * 10) }
        for r in [plainWhole, sideWhole] { XCTAssertEqual(r["tokensReused"] as? Int, 0) }
        XCTAssertEqual(
            (plain["tokensRun"] as? Int ?? 0) + (plain["tokensReused"] as? Int ?? 0), plainWhole["tokensRun"] as? Int)

        let two = try ToolHarness.run("qst-eval", choice + ["--side", side, "--side", side])
        XCTAssertEqual(two.status, 1)
        XCTAssertTrue(two.stderr.contains("evaluates one side network"), two.stderr)

        // A LoRA adapter trained the same way answers C too; LoRA has no decoding cache, so every prompt runs whole.
        let lora = try trainedLoRA(model)
        let withLoRA = try ToolHarness.json(try ok("qst-eval", choice + ["--lora", lora]).stdout)
        XCTAssertEqual(predictions(withLoRA), Array(repeating: 2, count: 12), "the adapters were trained to answer C")
        XCTAssertEqual(withLoRA["tokensReused"] as? Int, 0)
        XCTAssertEqual(withLoRA["tokensRun"] as? Int, plainWhole["tokensRun"] as? Int)
        let both = try ToolHarness.run("qst-eval", choice + ["--side", side, "--lora", lora])
        XCTAssertEqual(both.status, 1)
        XCTAssertTrue(both.stderr.contains("--lora and --side cannot be combined"), both.stderr)
        // A merged container's own side network would be dropped just as silently: refused too (choice and glue).
        _ = try ok("qst-export", [side, "--merge", model, "-o", path("tuned.qst4")])
        let merged = try ToolHarness.run(
            "qst-eval", ["choice", path("tuned.qst4")] + choice.dropFirst(2) + ["--lora", lora])
        XCTAssertEqual(merged.status, 1)
        XCTAssertTrue(merged.stderr.contains("is a merged container with its own side network"), merged.stderr)
        let glue = try ToolHarness.run(
            "qst-eval", ["glue", path("tuned.qst4"), "--task", "sst2", "--data", path("none.tsv"), "--lora", lora])
        XCTAssertEqual(glue.status, 1)
        XCTAssertTrue(glue.stderr.contains("is a merged container with its own side network"), glue.stderr)
    }
}
