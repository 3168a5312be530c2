import Foundation
import XCTest
import QSTTestSupport
import QSTFormat

/// SIGKILL at random moments, repeated: the output path holds the previous complete file or the new
/// complete file, never a part of one, and nothing else is left beside it; `qst-tune --resume` after each
/// kill reaches the weights of an uninterrupted run. Kill moments come from a seeded generator (the same
/// schedule every run), spread over the measured length of an uninterrupted run.
final class CrashSafetyTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws { dir = try ToolHarness.temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }
    /// Fixed creation time: the same inputs give the same bytes, so "the new file" is one known file.
    let reproducible = ["SOURCE_DATE_EPOCH": "1700000000"]

    func sha(_ p: String) -> String? {
        guard let d = FileManager.default.contents(atPath: p) else { return nil }
        return Checksums.sha256Hex(d)
    }

    func ok(_ tool: String, _ args: [String]) throws -> TimeInterval {
        let t0 = Date()
        let r = try ToolHarness.run(tool, args, environment: reproducible)
        XCTAssertEqual(r.status, 0, "\(tool) \(args): \(r.stderr)")
        return Date().timeIntervalSince(t0)
    }

    /// The real model in BF16 (a 270 MB input: quantizing and merging take long enough to be killed midway).
    func realModelBF16() throws -> String {
        let env = ProcessInfo.processInfo.environment
        let d = env["QST_MODEL_BF16"] ?? ReferenceScripts.cache + "/models/SmolLM2-135M-Instruct-bf16"
        if FileManager.default.fileExists(atPath: d + "/model.safetensors") { return d }
        try TestRequirement.unavailable("real model missing at \(d); run Scripts/fetch-model")
    }

    /// Files in `folder` that are neither `keep` nor named in `allowed` (temporary files, partial outputs).
    func strays(in folder: String, allowed: Set<String>) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter { !allowed.contains($0) }
    }

    /// Runs `tool args` `attempts` times, killing it after random delays in [0, span]; after each attempt
    /// `target` must hash to `previous` or `complete` (then it is put back to `previous`).
    func killRepeatedly(
        _ tool: String, _ args: [String], target: String, previous: Data, complete: String,
        span: TimeInterval, attempts: Int, seed: UInt64
    ) throws {
        var rng = SplitMixForTests(seed: seed)
        var killedMidway = 0, span = span
        let folder = (target as NSString).deletingLastPathComponent
        let name = (target as NSString).lastPathComponent
        let others = Set(try FileManager.default.contentsOfDirectory(atPath: folder))
        for i in 0..<attempts {
            let delay = span * rng.nextDouble()
            let r = try ToolHarness.run(tool, args, environment: reproducible, killAfter: delay)
            if r.signaled {
                killedMidway += 1
            } else {
                XCTAssertEqual(r.status, 0, "attempt \(i): \(r.stderr)")
                // It finished sooner than the measured run (a busy machine slowed that one): aim earlier.
                span = min(span, delay)
            }
            let now = sha(target)
            XCTAssertTrue(
                now == Checksums.sha256Hex(previous) || now == complete,
                "attempt \(i) (killed after \(delay) s): \(target) is neither the previous nor the new complete file")
            XCTAssertEqual(strays(in: folder, allowed: others.union([name])), [], "attempt \(i): left behind")
            if now != Checksums.sha256Hex(previous) { try previous.write(to: URL(fileURLWithPath: target)) }
        }
        XCTAssertGreaterThanOrEqual(killedMidway, attempts / 4, "too few attempts were killed while running")
    }

    func testQuantizeKilledAtRandomLeavesThePreviousOrTheNewFile() throws {
        let model = try realModelBF16()
        let target = path("model.qst4"), reference = path("reference.qst4")
        _ = try ok("qst-quantize", [model, target, "--block-size", "128"])
        let span = try ok("qst-quantize", [model, reference])
        let complete = try XCTUnwrap(sha(reference))
        try FileManager.default.removeItem(atPath: reference)
        try killRepeatedly(
            "qst-quantize", [model, target], target: target,
            previous: try Data(contentsOf: URL(fileURLWithPath: target)), complete: complete,
            span: span, attempts: 8, seed: 1)
    }

    func testMergeKilledAtRandomLeavesThePreviousOrTheNewFile() throws {
        let model = try realModelBF16()
        let base = path("base.qst4"), target = path("tuned.qst4"), reference = path("reference.qst4")
        _ = try ok("qst-quantize", [model, base])
        for seed in ["1", "2"] {
            _ = try ok("qst-init-side", [base, "-o", path("side\(seed)"), "--seed", seed, "--r", "32"])
        }
        _ = try ok("qst-export", [path("side1"), "--base", base, "-o", path("a1")])
        _ = try ok("qst-export", [path("side1"), "--merge", base, "-o", target])
        let span = try ok("qst-export", [path("side2"), "--merge", base, "-o", reference])
        let complete = try XCTUnwrap(sha(reference))
        try FileManager.default.removeItem(atPath: reference)
        try killRepeatedly(
            "qst-export", [path("side2"), "--merge", base, "-o", target], target: target,
            previous: try Data(contentsOf: URL(fileURLWithPath: target)), complete: complete,
            span: span, attempts: 8, seed: 2)
    }

    /// qst-tune checkpointing every step, killed again and again and resumed each time, ends with the same
    /// bytes as an uninterrupted run; after every kill the checkpoint in force is complete.
    func testTuneKilledAtRandomAndResumedReachesTheSameWeights() throws {
        let f = BadInputFixtures(dir: dir)
        let model = try f.synthetic, side = try f.syntheticSide
        var lines = ""
        var rng = SplitMixForTests(seed: 7)
        let words = ["the", "cat", "sat", "on", "a", "mat", "and", "ran", "off", "to", "see", "what", "was", "there"]
        for _ in 0..<40 {
            let n = 3 + Int(rng.nextDouble() * 10)
            lines +=
                "{\"text\": \"\((0..<n).map { _ in words[Int(rng.nextDouble() * Double(words.count))] }.joined(separator: " "))\"}\n"
        }
        let data = path("train.jsonl")
        try lines.write(toFile: data, atomically: true, encoding: .utf8)
        let args = [
            "--data", data, "--steps", "120", "--save-every", "1", "--batch-size", "2", "--max-length", "32",
            "--preset", "instruct", "--eval-every", "0",
        ]
        let span = try ok("qst-tune", [model, side, "-o", path("reference")] + args)
        let expected = try XCTUnwrap(sha(path("reference/final/side.safetensors")))
        let expectedMoments = try XCTUnwrap(sha(path("reference/checkpoint-00000120/optimizer.safetensors")))

        // Up to twelve runs killed at a random moment within the first eighth of an uninterrupted run's duration
        // (measured above, so the window follows the machine's speed and load), then one left to finish; a run
        // that finishes before its kill ends the series.
        let run = path("run")
        var killed = 0, finished = false
        for attempt in 0...12 where !finished {
            let resume = FileManager.default.fileExists(atPath: run + "/checkpoint.json")
            let command = resume ? [model, "--resume", run] : [model, side, "-o", run] + args
            let r = try ToolHarness.run(
                "qst-tune", command, killAfter: attempt < 12 ? 0.05 + span / 8 * rng.nextDouble() : nil)
            if r.signaled {
                killed += 1
                // As if the kill landed mid-append: the resumed run must cut this fragment off.
                if let h = FileHandle(forWritingAtPath: run + "/log.jsonl") {
                    h.seekToEndOfFile(); h.write(Data(#"{"elapsedSeconds":0.1,"ki"#.utf8)); try h.close()
                }
            } else {
                XCTAssertEqual(r.status, 0, "attempt \(attempt): \(r.stderr)")
                finished = true
            }
            try assertCheckpointComplete(run, attempt: attempt)
        }
        XCTAssertTrue(finished)
        XCTAssertGreaterThanOrEqual(
            killed, 4, "too few kills landed while training (an uninterrupted run took \(span) s)")
        XCTAssertEqual(sha(run + "/final/side.safetensors"), expected, "resumed weights differ after \(killed) kills")
        XCTAssertEqual(sha(run + "/checkpoint-00000120/optimizer.safetensors"), expectedMoments)
        // Every line of the log is a whole JSON object (no fragment fused with a resumed run's first entry).
        let log = try String(contentsOfFile: run + "/log.jsonl", encoding: .utf8)
        XCTAssertTrue(log.hasSuffix("\n"))
        for (n, line) in log.split(separator: "\n").enumerated() {
            XCTAssertNoThrow(
                try JSONSerialization.jsonObject(with: Data(line.utf8)), "log.jsonl line \(n + 1): \(line)")
        }
    }

    /// The checkpoint the pointer names is whole: every file present and readable.
    func assertCheckpointComplete(_ run: String, attempt: Int) throws {
        guard let pointer = FileManager.default.contents(atPath: run + "/checkpoint.json") else { return }
        let obj = try XCTUnwrap(
            try JSONSerialization.jsonObject(with: pointer) as? [String: Any], "attempt \(attempt): checkpoint.json")
        let ck = run + "/" + (obj["latest"] as? String ?? "?")
        for st in ["side.safetensors", "optimizer.safetensors"] {
            XCTAssertNoThrow(try SafetensorsFile(path: ck + "/" + st), "attempt \(attempt): \(st)")
        }
        for js in ["side_config.json", "trainer_state.json"] {
            let d = try XCTUnwrap(
                FileManager.default.contents(atPath: ck + "/" + js), "attempt \(attempt): \(js) missing")
            XCTAssertNoThrow(try JSONSerialization.jsonObject(with: d), "attempt \(attempt): \(js)")
        }
    }
}

/// SplitMix64, for kill schedules that are the same on every run.
struct SplitMixForTests {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func nextDouble() -> Double { Double(next() >> 11) / Double(1 << 53) }
}
