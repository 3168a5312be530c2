import Foundation
import XCTest
import QSTFormat

/// README.md's "When the input is bad" table, row by row: each row's command is run on a freshly made bad
/// input and must print the row's message (capital words = the paths, `…` = anything) with the row's exit
/// code; a failing command prints exactly one line and leaves no output file. Rows and scenarios must
/// correspond one to one, so the table cannot drift from the tools.
final class BadInputTableTests: XCTestCase {
    var dir: URL!
    var undo: [String] = []
    override func setUpWithError() throws { dir = try ToolHarness.temporaryDirectory() }
    override func tearDownWithError() throws {
        for u in undo.reversed() { HostileFileSystem.sh(u) }
        try? FileManager.default.removeItem(at: dir)
    }

    struct Row { let kind: String; let command: String; let message: String; let exit: Int32 }

    /// The table's rows: `| kind | `command` … | `message` … | exit |`.
    static func readmeRows() throws -> [Row] {
        let readme = try String(contentsOf: ToolHarness.repo.appendingPathComponent("README.md"), encoding: .utf8)
        guard let start = readme.range(of: "## When the input is bad\n") else {
            XCTFail("README has no bad-input section"); return []
        }
        let section = readme[start.upperBound...].prefix { _ in true }
        let body = section.components(separatedBy: "\n## ").first ?? ""
        func code(_ cell: String) -> String? {
            let parts = cell.components(separatedBy: "`")
            return parts.count >= 3 ? parts[1] : nil
        }
        var rows: [Row] = []
        for line in body.split(separator: "\n") where line.hasPrefix("| ") && !line.hasPrefix("| bad input") {
            let cells = line.split(separator: "|", omittingEmptySubsequences: false).dropFirst().dropLast()
                .map { $0.trimmingCharacters(in: .whitespaces) }
            guard cells.count == 4, let command = code(cells[1]), let message = code(cells[2]),
                let exit = Int32(cells[3])
            else {
                XCTFail("README table row not understood: \(line)"); continue
            }
            rows.append(Row(kind: cells[0], command: command, message: message, exit: exit))
        }
        return rows
    }

    /// What a row's command runs on: a value for each capital word, and optionally a shell prefix
    /// (resource limits) for the tool.
    struct Setup { var paths: [String: String]; var shellPrefix: String? = nil; var note = "" }

    static let placeholders = [
        "FILE", "OUT", "CONFIG", "ADAPTER", "SIDE", "BASE", "MODEL", "OTHER", "DATA", "RUN", "DIR", "TEXT",
    ]

    func scenarios(_ f: BadInputFixtures) -> [String: () throws -> Setup] {
        func out(_ name: String) -> String { f.path(name) }
        func preamble(_ d: inout Data, u16 v: UInt16, at o: Int) {
            withUnsafeBytes(of: v.littleEndian) { d.replaceSubrange(o..<(o + 2), with: $0) }
        }
        return [
            "truncated container": {
                Setup(paths: ["FILE": try f.edited(try f.base, "truncated.qst4") { $0 = $0.prefix(5000) }])
            },
            "truncated safetensors": {
                Setup(paths: [
                    "FILE": try f.edited(try f.tiny + "/model.safetensors", "truncated.safetensors") {
                        $0 = $0.prefix(100)
                    },
                    "OUT": out("t.qst4"), "CONFIG": try f.tiny + "/config.json",
                ])
            },
            "wrong magic": {
                Setup(paths: ["FILE": try f.edited(try f.tiny + "/model.safetensors", "not-a-container.qst4") { _ in }])
            },
            "unknown version": {
                Setup(paths: ["FILE": try f.edited(try f.base, "version2.qst4") { preamble(&$0, u16: 2, at: 8) }])
            },
            "header checksum mismatch": {
                Setup(paths: [
                    "FILE": try f.edited(try f.base, "bad-header.qst4") { d in
                        let hOff = d.withUnsafeBytes { Int($0.loadUnaligned(fromByteOffset: 24, as: UInt64.self)) }
                        d[hOff + 10] ^= 0x01
                    }
                ])
            },
            "tensor checksum mismatch": { Setup(paths: ["FILE": try f.corruptData]) },
            "corrupt base while merging": {
                Setup(paths: ["ADAPTER": try f.adapter, "FILE": try f.corruptData, "OUT": out("merged-corrupt.qst4")])
            },
            "shape mismatch": {
                // A side folder whose side_config.json says r 4 while its weights are r 2.
                let side = try f.copyFolder(try f.side(r: 2), "side-mixed")
                try FileManager.default.removeItem(atPath: side + "/side_config.json")
                try FileManager.default.copyItem(
                    atPath: try f.side(r: 4) + "/side_config.json", toPath: side + "/side_config.json")
                return Setup(paths: ["SIDE": side, "BASE": try f.base, "OUT": out("adapter-shape")])
            },
            "NaN weights": {
                let model = try f.copyFolder(try f.tiny, "nan-model")
                let st = try SafetensorsFile(path: model + "/model.safetensors")
                let offset = try st.info("model.layers.0.mlp.up_proj.weight").dataOffset
                _ = try f.edited(model + "/model.safetensors", "nan-model/model.safetensors") { d in
                    withUnsafeBytes(of: Float.nan.bitPattern.littleEndian) {
                        d.replaceSubrange(offset..<(offset + 4), with: $0)
                    }
                }
                return Setup(paths: ["MODEL": model, "OUT": out("nan.qst4")])
            },
            "mismatched base and adapter": {
                Setup(paths: ["ADAPTER": try f.adapter, "OTHER": try f.other, "OUT": out("wrong-base.qst4")])
            },
            "bad JSONL line": {
                try Data("{\"text\": \"fine\"}\n{\"text\": \"unterminated\n".utf8).write(
                    to: URL(fileURLWithPath: out("bad.jsonl")))
                return Setup(paths: [
                    "MODEL": try f.synthetic, "SIDE": try f.syntheticSide, "DATA": out("bad.jsonl"),
                    "RUN": out("run-bad"),
                ])
            },
            "over-long training record": {
                let long = String(repeating: "a long line ", count: 10)
                try Data("{\"text\": \"hi\"}\n{\"text\": \"\(long)\"}\n".utf8).write(
                    to: URL(fileURLWithPath: out("long.jsonl")))
                return Setup(paths: [
                    "MODEL": try f.synthetic, "SIDE": try f.syntheticSide, "DATA": out("long.jsonl"),
                    "RUN": out("run-long"),
                ])
            },
            "over-long prompt": {
                Setup(paths: ["MODEL": try f.synthetic, "TEXT": String(repeating: "x", count: 5000)])
            },
            "wrong tokenizer": {
                // The tiny LLaMA (300 tokens) with the synthetic model's tokenizer (512 tokens).
                let model = try f.copyFolder(try f.tiny, "other-tokenizer")
                let c = try QST4Container(path: try f.synthetic)
                for name in ["tokenizer.json", "tokenizer_config.json"] {
                    try XCTUnwrap(try c.embeddedFile(name)).write(to: URL(fileURLWithPath: model + "/" + name))
                }
                return Setup(paths: ["MODEL": model])
            },
            "unsupported architecture": {
                let model = try f.copyFolder(try f.tiny, "gpt2")
                let config = try String(contentsOfFile: model + "/config.json", encoding: .utf8)
                try config.replacingOccurrences(of: "\"llama\"", with: "\"gpt2\"").write(
                    toFile: model + "/config.json", atomically: false, encoding: .utf8)
                return Setup(paths: ["MODEL": model])
            },
            "unwritable output": {
                let ro = out("read-only")
                try FileManager.default.createDirectory(atPath: ro, withIntermediateDirectories: true)
                var note = "missing folder"
                var dir = ro + "/missing"
                if let (how, u) = HostileFileSystem.makeReadOnly(ro) { self.undo.append(u); note = how; dir = ro }
                return Setup(paths: ["MODEL": try f.tiny, "OUT": dir + "/out.qst4", "DIR": dir], note: note)
            },
            "disk full": {
                let full = out("full")
                try FileManager.default.createDirectory(atPath: full, withIntermediateDirectories: true)
                // The container is ~90 KB: a 32 KiB tmpfs fills up; without mount rights, a 16 KiB file-size limit.
                if let u = HostileFileSystem.mountSmallTmpfs(full, kilobytes: 32) {
                    self.undo.append(u)
                    return Setup(paths: ["MODEL": try f.tiny, "OUT": full + "/out.qst4"], note: "tmpfs")
                }
                return Setup(
                    paths: ["MODEL": try f.tiny, "OUT": full + "/out.qst4"], shellPrefix: "ulimit -f 32;",
                    note: "ulimit -f")
            },
        ]
    }

    /// `text` with each capital placeholder replaced (whole words only).
    static func substitute(_ text: String, _ paths: [String: String], escape: (String) -> String) -> String {
        var out = "", word = ""
        func flush() {
            out += paths[word].map(escape) ?? (placeholders.contains(word) ? word : escape(word)); word = ""
        }
        for ch in text {
            if ch.isLetter || ch.isNumber || ch == "_" { word.append(ch) } else { flush(); out += escape(String(ch)) }
        }
        flush()
        return out
    }

    static func pattern(_ message: String, _ paths: [String: String]) throws -> NSRegularExpression {
        let escaped = substitute(message, paths) { NSRegularExpression.escapedPattern(for: $0) }
        return try NSRegularExpression(pattern: "^" + escaped.replacingOccurrences(of: "…", with: ".*") + "$")
    }

    func run(_ words: [String], shellPrefix: String?) throws -> ToolHarness.Result {
        guard let prefix = shellPrefix else { return try ToolHarness.run(words[0], Array(words.dropFirst())) }
        return try ToolHarness.run(
            "/bin/sh", ["-c", prefix + " exec \"$0\" \"$@\"", try ToolHarness.binary(words[0])] + words.dropFirst())
    }

    func testEveryRowOfTheREADMETableHolds() throws {
        let rows = try Self.readmeRows()
        let fixtures = BadInputFixtures(dir: dir)
        _ = try fixtures.tiny
        let scenarios = scenarios(fixtures)
        XCTAssertEqual(Set(rows.map(\.kind)), Set(scenarios.keys), "README rows and tested scenarios differ")
        XCTAssertEqual(rows.count, Set(rows.map(\.kind)).count, "a README row appears twice")
        for row in rows {
            guard let make = scenarios[row.kind] else { continue }
            let setup = try make()
            // The command as the table spells it, with the paths filled in.
            let words = row.command.split(separator: " ").map { setup.paths[String($0)] ?? String($0) }
            let r = try run(words, shellPrefix: setup.shellPrefix)
            if !setup.note.isEmpty { print("README row '\(row.kind)': made with \(setup.note)") }
            let context =
                "row '\(row.kind)' (\(setup.note.isEmpty ? "" : setup.note + "; "))stderr: \(r.stderr) stdout: \(r.stdout.suffix(400))"
            XCTAssertFalse(r.signaled, "crashed: \(context)")
            XCTAssertEqual(r.status, row.exit, context)
            let regex = try Self.pattern(row.message, setup.paths)
            let lines = (r.stderr + "\n" + r.stdout).split(separator: "\n").map {
                $0.trimmingCharacters(in: .whitespaces)
            }
            XCTAssertTrue(
                lines.contains { regex.firstMatch(in: $0, range: NSRange($0.startIndex..., in: $0)) != nil },
                "no line matches \(regex.pattern): \(context)")
            if row.exit == 1 {
                XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, "not one line: \(context)")
                if let o = setup.paths["OUT"] {
                    XCTAssertFalse(FileManager.default.fileExists(atPath: o), "output left behind: \(context)")
                    let folder = (o as NSString).deletingLastPathComponent
                    let stray = ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter {
                        $0.contains(".tmp.")
                    }
                    XCTAssertEqual(stray, [], "temporary files left behind: \(context)")
                }
            }
        }
    }

    /// The placeholder substitution itself: whole words only, `…` matches anything.
    func testPatternsReplaceWholeWordsOnly() throws {
        let re = try Self.pattern("FILE: tensor 'x': NaN at … (FILES)", ["FILE": "/a b/c.qst4"])
        let ok = "/a b/c.qst4: tensor 'x': NaN at element 3 (FILES)"
        XCTAssertNotNil(re.firstMatch(in: ok, range: NSRange(ok.startIndex..., in: ok)))
        let bad = "FILE: tensor 'x': NaN at element 3 (FILES)"
        XCTAssertNil(re.firstMatch(in: bad, range: NSRange(bad.startIndex..., in: bad)))
    }
}
