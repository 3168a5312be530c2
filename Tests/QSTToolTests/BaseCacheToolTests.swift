import Foundation
import XCTest

/// `qst-tune --cache-base` as a user runs it on SmolLM2-135M in NF4 with 24 SST-2 sentences: two epochs
/// with the cache give byte-identical final weights to two epochs without it, and the second epoch reads
/// every example from the cache; a cache for another `r` and a trainable downsampler are refused with one
/// line. Slow unoptimised: release builds, or debug with QST_REAL_MODEL_TESTS=1.
final class BaseCacheToolTests: ToolTestCase {
    func testCachedRunMatchesPlainRunAndStaleCacheIsRefused() throws {
        try requireRealModelBuild()
        let folder = try ReferenceScripts.realModelF32()
        let base = path("smollm2.qst4")
        _ = try ok("qst-quantize", [folder, base])
        _ = try ok("qst-init-side", [base, "-o", path("side"), "--downsample", "avgpool", "--seed", "3", "--r", "16"])
        let data = ToolHarness.repo.appendingPathComponent("Scripts/data/sst2/train.tsv").path
        let dev = ToolHarness.repo.appendingPathComponent("Scripts/data/sst2/dev.tsv").path
        // 3 steps per epoch; held-out evaluations of 16 dev sentences at steps 2 and 4 and at the end (6).
        let train = [
            "--task", "sst2", "--data", data, "--train-limit", "24", "--epochs", "2", "--batch-size", "8",
            "--max-length", "64", "--eval", dev, "--eval-limit", "16", "--eval-every", "2", "--json",
        ]
        let cached = try ToolHarness.json(
            try ok("qst-tune", [base, path("side")] + train + ["--cache-base", path("cache"), "-o", path("cached")])
                .stdout)
        let stats = try XCTUnwrap(cached["baseCache"] as? [String: Any])
        XCTAssertEqual(stats["misses"] as? Int, 24 + 16, "the training and the evaluation examples, once each")
        XCTAssertEqual(stats["hits"] as? Int, 24 + 2 * 16, "epoch 2 and the later evaluations read every example")
        _ = try ok("qst-tune", [base, path("side")] + train + ["-o", path("plain")])
        let a = try Data(contentsOf: URL(fileURLWithPath: path("cached/final/side.safetensors")))
        let b = try Data(contentsOf: URL(fileURLWithPath: path("plain/final/side.safetensors")))
        XCTAssertTrue(a == b, "final side weights differ with and without the cache")
        // The evaluations through the cache are the plain run's, bit for bit (loss and accuracy as logged).
        func evals(_ run: String) throws -> [String] {
            try String(contentsOfFile: path(run + "/log.jsonl"), encoding: .utf8).split(separator: "\n")
                .compactMap { line -> String? in
                    guard let e = try? ToolHarness.json(String(line)), e["kind"] as? String == "eval" else {
                        return nil
                    }
                    return "\(e["step"] ?? "") \(e["loss"] ?? "") \(e["accuracy"] ?? "")"
                }
        }
        XCTAssertEqual(try evals("cached").count, 3)
        XCTAssertEqual(try evals("cached"), try evals("plain"))

        _ = try ok("qst-init-side", [base, "-o", path("side-r8"), "--downsample", "avgpool", "--r", "8"])
        let stale = try ToolHarness.run(
            "qst-tune", [base, path("side-r8")] + train + ["--cache-base", path("cache"), "-o", path("r8")])
        XCTAssertNotEqual(stale.status, 0)
        let line = stale.stderr.split(separator: "\n").last.map(String.init) ?? ""
        XCTAssertTrue(line.contains(path("cache") + "/segment-") && line.contains("r 16 vs 8"), stale.stderr)

        _ = try ok("qst-init-side", [base, "-o", path("side-adapter"), "--downsample", "adapter"])
        let adapter = try ToolHarness.run(
            "qst-tune", [base, path("side-adapter")] + train + ["--cache-base", path("cache"), "-o", path("ad")])
        XCTAssertNotEqual(adapter.status, 0)
        XCTAssertTrue(
            adapter.stderr.contains("side-adapter: --cache-base needs a gradient-free downsampler"), adapter.stderr)
    }
}
