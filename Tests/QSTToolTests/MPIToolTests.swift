import Foundation
import QSTFormat
import XCTest
import QSTTestSupport

/// `mpirun -np 2 qst-tune` on this machine (loopback TCP) against one process, on a random tiny model.
/// Skips when Open MPI's mpirun is absent, unless QST_REQUIRE_MPI=1 (Scripts/test installs it and sets it).
final class MPIToolTests: ToolTestCase {
    /// One thread per rank (2 ranks on 2 cores); root containers need the allow-as-root pair.
    let environment = ["QST_THREADS": "1", "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"]
    /// Training must move some weight by more than this (6 steps at the default learning rate move the upsample's
    /// by ~1.5e-3, the others' by ~7.5e-4).
    let minimumMove = 1e-3
    /// Relative Frobenius distance between an mpirun run's update (final − initial weights) and one process's:
    /// measured 3.0e-4 – 5.6e-4 on an AVX2-only AMD EPYC (2026-12-06), where OpenBLAS's Haswell kernels round a
    /// rank's smaller products differently and AdamW turns that into steps of up to 2·lr on the few elements whose
    /// gradient is at rounding level (their largest element difference was 2.7e-4 = 2·lr there, 3e-8 on AVX-512
    /// CPUs). A per-element bound would then be the whole 2·lr·steps distance and could not fail; a rank that
    /// dropped or repeated its share of a batch moves the update by order 1.
    static let updateBound = 5e-3
    /// Relative distance between the 1- and 2-rank lora_B updates: measured 1.75e-3 (2026-12-04,
    /// 4 steps); a different seed moves it to order 1. Bound with ~6× headroom (was 2·lr·steps per element).
    static let loraUpdateBound = 1e-2

    func mpirun() throws -> String {
        let dirs = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init)
        if let found = dirs.map({ $0 + "/mpirun" }).first(where: { FileManager.default.isExecutableFile(atPath: $0) }) {
            return found
        }
        try TestRequirement.unavailable(
            "mpirun not found (apt-get install libopenmpi-dev openmpi-bin)", variable: "QST_REQUIRE_MPI")
    }

    struct Outcome { let status: Int32; let stdout: String; let stderr: String; let timedOut: Bool }

    /// Runs a process with output in files and a deadline (a hung MPI job must fail the test, not stall it).
    func launch(_ executable: String, _ args: [String], extra: [String: String] = [:], timeout: TimeInterval = 180)
        throws -> Outcome
    {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = args
        p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }.merging(extra) { $1 }
        let outPath = path("out-\(UUID().uuidString)"), errPath = path("err-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: outPath, contents: nil);
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        p.standardOutput = FileHandle(forWritingAtPath: outPath);
        p.standardError = FileHandle(forWritingAtPath: errPath)
        try p.run()
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        let timedOut = p.isRunning
        if timedOut { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
        let read = { (f: String) in (try? String(contentsOfFile: f, encoding: .utf8)) ?? "" }
        return Outcome(status: p.terminationStatus, stdout: read(outPath), stderr: read(errPath), timedOut: timedOut)
    }

    func tune(_ args: [String], ranks: Int?, extra: [String: String] = [:]) throws -> Outcome {
        let tool = try ToolHarness.binary("qst-tune")
        if let ranks {
            return try launch(
                try mpirun(), ["-np", String(ranks), "--oversubscribe", "--mca", "btl", "self,tcp", tool] + args,
                extra: extra)
        }
        return try launch(tool, args, extra: extra)
    }

    /// Base, side network and prompt/completion data (the synthetic tokenizer maps bytes to tokens).
    func prepare() throws -> (base: String, side: String) {
        let base = path("base.qst4"), side = path("side")
        XCTAssertEqual(try ToolHarness.run("qst-synthetic", ["tiny", "-o", base]).status, 0)
        XCTAssertEqual(try ToolHarness.run("qst-init-side", [base, "-o", side]).status, 0)
        let words = ["the", "cat", "dog", "sat", "ran", "on", "a", "mat", "log", "fast", "slow", "red", "blue"]
        var state: UInt64 = 12345
        func next(_ n: Int) -> Int {
            state = state &* 6364136223846793005 &+ 1442695040888963407; return Int(state >> 33) % n
        }
        for (name, count) in [("train.jsonl", 40), ("eval.jsonl", 12)] {
            var text = ""
            for _ in 0..<count {
                let prompt = (0..<(2 + next(7))).map { _ in words[next(words.count)] }.joined(separator: " ")
                let answer = (0..<(1 + next(5))).map { _ in words[next(words.count)] }.joined(separator: " ")
                text += "{\"prompt\": \"\(prompt):\", \"completion\": \" \(answer)\"}\n"
            }
            try text.write(toFile: path(name), atomically: true, encoding: .utf8)
        }
        return (base, side)
    }

    func common(_ run: String, steps: Int) -> [String] {
        [
            "--data", path("train.jsonl"), "-o", run, "--steps", String(steps), "--batch-size", "4", "--seed", "3",
            "--save-every", "2",
        ]
    }

    func weights(_ folder: String) throws -> [String: [Float]] {
        let f = try SafetensorsFile(path: folder + "/side.safetensors")
        var out: [String: [Float]] = [:]
        for (name, info) in f.tensors {
            var v = [Float](repeating: 0, count: info.elementCount)
            try v.withUnsafeMutableBufferPointer { try f.floats(name, into: $0) }
            out[name] = v
        }
        return out
    }

    /// Largest element difference over all tensors; NaN (so every bound check fails) when a value
    /// is not finite, a tensor is missing or the sizes differ.
    func maxDifference(_ a: [String: [Float]], _ b: [String: [Float]]) -> Double {
        XCTAssertEqual(Set(a.keys), Set(b.keys))
        guard Set(a.keys) == Set(b.keys) else { return .nan }
        var worst = 0.0
        for k in a.keys {
            let d = Closeness.maxAbsoluteError(a[k]!, b[k]!)
            if !(d <= worst) { worst = d }  // NaN sticks
        }
        return worst
    }

    /// Relative Frobenius distance between the updates `run − initial` and `reference − initial`; NaN (fails every
    /// bound) for differing tensors, non-finite values or no update.
    func updateDistance(_ run: [String: [Float]], _ reference: [String: [Float]], from initial: [String: [Float]])
        -> Double
    {
        guard Set(run.keys) == Set(reference.keys), Set(run.keys) == Set(initial.keys) else { return .nan }
        var num = 0.0, den = 0.0
        for (k, r) in reference {
            let a = run[k]!, i = initial[k]!
            guard a.count == r.count, i.count == r.count else { return .nan }
            for e in 0..<r.count {
                num += Double(a[e] - r[e]) * Double(a[e] - r[e])
                den += Double(r[e] - i[e]) * Double(r[e] - i[e])
            }
        }
        return den > 0 ? (num / den).squareRoot() : .nan
    }

    /// Started by mpirun but without a usable libmpi: one clear line, non-zero, before any work (no mpirun needed).
    func testUnusableMPILibraryIsAClearError() throws {
        let r = try tune(
            [path("base.qst4"), path("side"), "--data", path("train.jsonl"), "-o", path("run")], ranks: nil,
            extra: ["OMPI_COMM_WORLD_SIZE": "2", "QST_MPI_LIBRARY": "/nonexistent/libmpi.so.40"])
        XCTAssertEqual(r.status, 1)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("started by mpirun"), r.stderr)
        XCTAssertTrue(r.stderr.contains("cannot load /nonexistent/libmpi.so.40"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("run")))
    }

    func testTwoRanksMatchOneProcess() throws {
        let (base, side) = try prepare()
        let evalArgs = ["--eval", path("eval.jsonl"), "--json"]
        let one = try tune([base, side] + common(path("one"), steps: 6) + evalArgs, ranks: nil)
        XCTAssertEqual(one.status, 0, one.stderr)
        let two = try tune([base, side] + common(path("two"), steps: 6) + evalArgs, ranks: 2)
        XCTAssertEqual(two.status, 0, two.stderr)
        XCTAssertFalse(two.timedOut)

        let reference = try weights(path("one/final")), initial = try weights(side)
        XCTAssertGreaterThan(maxDifference(reference, initial), minimumMove, "training must move the weights")
        let diff = updateDistance(try weights(path("two/final")), reference, from: initial)
        print("2 ranks vs 1 process: relative distance of the updates \(diff)")
        assertWithin(diff, Self.updateBound, "2 ranks against 1 process, relative distance of the updates")

        // Evaluation is sharded and reduced: the same loss over the same labelled tokens.
        let s1 = try ToolHarness.json(one.stdout), s2 = try ToolHarness.json(two.stdout)
        let e1 = try XCTUnwrap(s1["finalEval"] as? [String: Any]), e2 = try XCTUnwrap(s2["finalEval"] as? [String: Any])
        XCTAssertEqual(e1["labelledTokens"] as? Int, e2["labelledTokens"] as? Int)
        let l1 = try XCTUnwrap(e1["loss"] as? Double), l2 = try XCTUnwrap(e2["loss"] as? Double)
        XCTAssertEqual(l1, l2, accuracy: 1e-6 * l1)
        XCTAssertEqual((s2["dataParallel"] as? [String: Any])?["ranks"] as? Int, 2)
        // Rank 0 alone reports: one summary, each note once.
        XCTAssertEqual(two.stderr.components(separatedBy: "training examples:").count, 2, two.stderr)
        XCTAssertEqual(two.stdout.components(separatedBy: "\"finalEval\"").count, 2, two.stdout)
    }

    /// LoRA over 2 ranks against one process. AdamW turns rounding-level gradient differences into
    /// steps of up to lr on elements whose gradient is ~0 (zero-initialised lora_B makes these
    /// common early on), so a per-element bound would be the whole 2·lr·steps distance and could not
    /// fail. Instead: lora_B starts at zero, so its final value is the whole update, and the two
    /// updates must agree as tensors (relative Frobenius distance) and the losses to 1e-4.
    func testLoRATwoRanks() throws {
        let (base, _) = try prepare()
        let args = [
            "--method", "lora", "--data", path("train.jsonl"), "--eval", path("eval.jsonl"), "--steps", "4",
            "--batch-size", "4", "--seed", "3", "--lr", "5e-4", "--json",
        ]
        let one = try tune([base] + args + ["-o", path("lora1")], ranks: nil)
        XCTAssertEqual(one.status, 0, one.stderr)
        let two = try tune([base] + args + ["-o", path("lora2")], ranks: 2)
        XCTAssertEqual(two.status, 0, two.stderr)
        func adapter(_ run: String) throws -> [String: [Float]] {
            let f = try SafetensorsFile(path: path(run) + "/final/adapter_model.safetensors")
            return try f.tensors.mapValues { info in
                var v = [Float](repeating: 0, count: info.elementCount)
                try v.withUnsafeMutableBufferPointer { try f.floats(info.name, into: $0) }
                return v
            }
        }
        let a1 = try adapter("lora1"), a2 = try adapter("lora2")
        XCTAssertEqual(Set(a1.keys), Set(a2.keys))
        var num = 0.0, den = 0.0
        for (name, b1) in a1 where name.contains("lora_B") {
            let b2 = try XCTUnwrap(a2[name])
            XCTAssertEqual(b1.count, b2.count, name)
            for (x, y) in zip(b1, b2) { num += Double(x - y) * Double(x - y); den += Double(x) * Double(x) }
        }
        let distance = (num / den).squareRoot()  // NaN (fails) for non-finite weights or no update
        print("LoRA 2 ranks vs 1 process: relative distance of the lora_B updates \(distance), |B| \(den.squareRoot())")
        XCTAssertGreaterThan(den, 0, "training must move lora_B")
        assertWithin(distance, Self.loraUpdateBound, "relative distance between the 1- and 2-rank LoRA updates")
        let l1 = try XCTUnwrap((try ToolHarness.json(one.stdout)["finalEval"] as? [String: Any])?["loss"] as? Double)
        let l2 = try XCTUnwrap((try ToolHarness.json(two.stdout)["finalEval"] as? [String: Any])?["loss"] as? Double)
        XCTAssertEqual(l1, l2, accuracy: 1e-4 * l1)
    }

    func testDeadRankStopsTheJobAndResumeChangesRankCount() throws {
        let (base, side) = try prepare()
        let straight = try tune([base, side] + common(path("straight"), steps: 8), ranks: nil)
        XCTAssertEqual(straight.status, 0, straight.stderr)
        let reference = try weights(path("straight/final"))

        // Rank 1 dies (SIGKILL) right after step 5: the job ends non-zero, rank 0 says why, checkpoint 4 stays.
        let killed = try tune(
            [base, side] + common(path("mpi"), steps: 8), ranks: 2,
            extra: ["QST_DEBUG_KILL_AT_STEP": "5", "QST_DEBUG_KILL_RANK": "1"])
        XCTAssertFalse(killed.timedOut, "the job hung after a rank died")
        XCTAssertNotEqual(killed.status, 0)
        XCTAssertTrue(
            killed.stderr.contains("rank 0 of 2 stopped: mpirun ended the job (another rank failed"), killed.stderr)
        XCTAssertTrue(killed.stderr.contains("the last checkpoint in \(path("mpi")) is intact"), killed.stderr)
        let pointer = try ToolHarness.json(try String(contentsOfFile: path("mpi/checkpoint.json"), encoding: .utf8))
        XCTAssertEqual(pointer["step"] as? Int, 4)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("mpi/final")))

        // Resumed by one process: the same weights as the straight run.
        let resumed = try tune([base, "--resume", path("mpi")], ranks: nil)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        let initial = try weights(side)
        let d1 = updateDistance(try weights(path("mpi/final")), reference, from: initial)
        print("2 ranks then 1 process vs the straight run: relative distance of the updates \(d1)")
        assertWithin(d1, Self.updateBound, "2 ranks then 1 process against the straight run")

        // The other way: one process killed after step 3 (checkpoint 2), resumed by 2 ranks.
        let single = try tune(
            [base, side] + common(path("single"), steps: 8), ranks: nil, extra: ["QST_DEBUG_KILL_AT_STEP": "3"])
        XCTAssertNotEqual(single.status, 0)
        let again = try tune([base, "--resume", path("single")], ranks: 2)
        XCTAssertEqual(again.status, 0, again.stderr)
        let d2 = updateDistance(try weights(path("single/final")), reference, from: initial)
        print("1 process then 2 ranks vs the straight run: relative distance of the updates \(d2)")
        assertWithin(d2, Self.updateBound, "1 process then 2 ranks against the straight run")
    }
}
