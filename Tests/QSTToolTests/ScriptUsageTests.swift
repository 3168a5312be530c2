import Foundation
import XCTest

/// Every bash command in Scripts/ answers `--help` with exactly its usage, the comment block after its
/// shebang, and does nothing else (no set-up, no build: each prints before any work). The rule is
/// Scripts/usage.sh's; this test states it again on its own, so a script whose `--help` printed a hard-coded
/// line range that had drifted from its header (four did, BENCHMARKS.md §36, three more §37) fails here.
final class ScriptUsageTests: XCTestCase {
    /// The commands: bash scripts, not the `.sh` files they source.
    private func bashCommands() throws -> [URL] {
        let dir = ToolHarness.repo.appendingPathComponent("Scripts")
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
        return names.compactMap { name in
            let url = dir.appendingPathComponent(name)
            guard !name.hasSuffix(".sh"), let text = try? String(contentsOf: url, encoding: .utf8),
                text.hasPrefix("#!/usr/bin/env bash\n")
            else { return nil }
            return url
        }
    }

    /// Lines 2… while they start with "#", each without its "#" and one following space.
    private func header(of url: URL) throws -> String {
        let lines = try String(contentsOf: url, encoding: .utf8).components(separatedBy: "\n").dropFirst()
        var out: [String] = []
        for line in lines {
            guard line.hasPrefix("#") else { break }
            var rest = line.dropFirst()
            if rest.hasPrefix(" ") { rest = rest.dropFirst() }
            out.append(String(rest))
        }
        return out.joined(separator: "\n") + "\n"
    }

    func testEveryBashScriptPrintsItsHeaderForHelp() throws {
        let scripts = try bashCommands()
        // A floor, so that a changed shebang or folder cannot make the loop check nothing.
        XCTAssertGreaterThanOrEqual(scripts.count, 25, "bash commands found in Scripts/: \(scripts.count)")
        for script in scripts {
            let expected = try header(of: script)
            XCTAssertGreaterThan(expected.count, 40, "\(script.lastPathComponent): no usage header")
            let r = try ToolHarness.run("/bin/bash", [script.path, "--help"])
            XCTAssertEqual(r.status, 0, "\(script.lastPathComponent) --help: exit \(r.status); \(r.stderr)")
            // bench-peer-llamacpp adds its Python driver's options once its venv is set up (after the header).
            if script.lastPathComponent == "bench-peer-llamacpp" {
                XCTAssertTrue(r.stdout.hasPrefix(expected), "bench-peer-llamacpp --help does not start with its header")
            } else {
                XCTAssertEqual(r.stdout, expected, "\(script.lastPathComponent) --help does not print its header")
            }
        }
    }
}
