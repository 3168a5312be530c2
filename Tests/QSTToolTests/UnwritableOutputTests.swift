import Foundation
import XCTest
import QSTTestSupport
import QSTFormat

/// A full file system and a read-only folder: the tool says so in one line, exits 1, and the file that was
/// there before is untouched, with nothing else left beside it. A small tmpfs and a read-only bind mount
/// where the machine allows them (root); otherwise a file-size limit (`ulimit -f`, which the tools turn
/// into an EFBIG write error) and the immutable attribute or permission bits.
final class UnwritableOutputTests: XCTestCase {
    var dir: URL!
    var undo: [String] = []
    override func setUpWithError() throws { dir = try ToolHarness.temporaryDirectory() }
    override func tearDownWithError() throws {
        for u in undo.reversed() { HostileFileSystem.sh(u) }
        try? FileManager.default.removeItem(at: dir)
    }

    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    /// Runs the tool (under `shellPrefix` when given) and checks the failure and the folder afterwards.
    func assertRefused(
        _ tool: String, _ args: [String], shellPrefix: String? = nil, folder: String, previous: [String: Data],
        says needle: String, file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let r: ToolHarness.Result
        if let p = shellPrefix {
            r = try ToolHarness.run("/bin/sh", ["-c", p + " exec \"$0\" \"$@\"", try ToolHarness.binary(tool)] + args)
        } else {
            r = try ToolHarness.run(tool, args)
        }
        XCTAssertFalse(r.signaled, "\(tool) was killed: \(r.stderr)", file: file, line: line)
        XCTAssertEqual(r.status, 1, r.stderr, file: file, line: line)
        XCTAssertTrue(r.stderr.hasPrefix("\(tool): error: "), r.stderr, file: file, line: line)
        XCTAssertTrue(r.stderr.contains(needle), "'\(needle)' missing: \(r.stderr)", file: file, line: line)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr, file: file, line: line)
        let left = Set((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [])
        XCTAssertEqual(left, Set(previous.keys), "files in \(folder) afterwards", file: file, line: line)
        for (name, bytes) in previous {
            XCTAssertEqual(
                FileManager.default.contents(atPath: folder + "/" + name), bytes, "\(name) changed", file: file,
                line: line)
        }
    }

    func testFullFileSystemKeepsThePreviousFiles() throws {
        let f = BadInputFixtures(dir: dir)
        let tiny = try f.tiny, base = try f.base, adapter = try f.adapter
        let full = path("full")
        try FileManager.default.createDirectory(atPath: full, withIntermediateDirectories: true)
        let previous = try Data(contentsOf: URL(fileURLWithPath: base))
        // Room for the previous container, not for a second one beside it.
        var prefix: String?
        if let u = HostileFileSystem.mountSmallTmpfs(full, kilobytes: previous.count / 1024 + 48) {
            undo.append(u)
        } else {
            prefix = "ulimit -f \(previous.count / 1024);"  // blocks of 512 (dash) or 1024 (bash) bytes
        }
        try previous.write(to: URL(fileURLWithPath: full + "/model.qst4"))
        let needle = prefix == nil ? "write failed: No space left on device" : "write failed: File too large"
        try assertRefused(
            "qst-quantize", [tiny, full + "/model.qst4", "--block-size", "32", "--keep", ".*", "--dtype", "f32"],
            shellPrefix: prefix, folder: full, previous: ["model.qst4": previous], says: full + "/model.qst4: " + needle
        )
        try assertRefused(
            "qst-export", [adapter, "--merge", base, "-o", full + "/model.qst4"], shellPrefix: prefix,
            folder: full, previous: ["model.qst4": previous], says: needle)
    }

    func testFullFileSystemDuringTrainingKeepsTheLastCheckpoint() throws {
        let f = BadInputFixtures(dir: dir)
        let model = try f.synthetic, side = try f.syntheticSide
        let data = path("train.jsonl")
        try String(repeating: "{\"text\": \"the cat sat on the mat\"}\n", count: 8).write(
            toFile: data, atomically: true, encoding: .utf8)
        let run = path("run")
        try FileManager.default.createDirectory(atPath: run, withIntermediateDirectories: true)
        // A side checkpoint of this model is ~0.4 MB (weights + two moments): the second one does not fit.
        guard let u = HostileFileSystem.mountSmallTmpfs(run, kilobytes: 720) else {
            try TestRequirement.unavailable(
                "cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN); the file-size-limit case is covered by testFullFileSystemKeepsThePreviousFiles",
                variable: "QST_REQUIRE_ROOT_FS")
        }
        undo.append(u)
        let r = try ToolHarness.run(
            "qst-tune",
            [
                model, side, "--data", data, "-o", run, "--steps", "4", "--save-every", "1",
                "--batch-size", "2", "--max-length", "16",
            ])
        XCTAssertFalse(r.signaled)
        XCTAssertEqual(r.status, 1, r.stderr)
        // qst-tune notes its progress on stderr; the error is the one last line.
        let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("qst-tune: error: ") }
        XCTAssertEqual(errors.count, 1, r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").last, errors.first)
        XCTAssertTrue(errors.first?.hasSuffix(": write failed: No space left on device") == true, r.stderr)
        // The pointer names a complete checkpoint, which --resume accepts (and then fails on the disk again).
        let pointer = try XCTUnwrap(FileManager.default.contents(atPath: run + "/checkpoint.json"))
        let latest = try XCTUnwrap(
            (try JSONSerialization.jsonObject(with: pointer) as? [String: Any])?["latest"] as? String)
        XCTAssertNoThrow(try SafetensorsFile(path: run + "/" + latest + "/optimizer.safetensors"))
        XCTAssertNoThrow(try SafetensorsFile(path: run + "/" + latest + "/side.safetensors"))
        for name in try FileManager.default.contentsOfDirectory(atPath: run) {
            XCTAssertFalse(name.contains(".tmp."), "temporary file left: \(name)")
        }
    }

    func testReadOnlyFolderKeepsThePreviousFiles() throws {
        let f = BadInputFixtures(dir: dir)
        let tiny = try f.tiny, base = try f.base, side = try f.side(r: 2)
        let ro = path("read-only")
        try FileManager.default.createDirectory(atPath: ro, withIntermediateDirectories: true)
        let previous = try Data(contentsOf: URL(fileURLWithPath: base))
        try previous.write(to: URL(fileURLWithPath: ro + "/model.qst4"))
        guard let (how, u) = HostileFileSystem.makeReadOnly(ro) else {
            try TestRequirement.unavailable(
                "cannot make a folder read-only here (root without mount or chattr)", variable: "QST_REQUIRE_ROOT_FS")
        }
        undo.append(u)
        let needle = "cannot create a temporary file in '\(ro)'"
        try assertRefused(
            "qst-quantize", [tiny, ro + "/model.qst4"], folder: ro, previous: ["model.qst4": previous],
            says: needle + ": ")
        try assertRefused(
            "qst-export", [side, "--merge", base, "-o", ro + "/model.qst4"], folder: ro,
            previous: ["model.qst4": previous], says: needle)
        try assertRefused(
            "qst-export", [side, "--base", base, "-o", ro + "/adapter"], folder: ro,
            previous: ["model.qst4": previous], says: ro + "/adapter")
        print("read-only folder made by \(how)")
    }
}
