import Foundation
import XCTest
import QSTTestSupport
import QSTFormat

/// Good inputs the bad-input tests start from, made once per test with the built tools: the tiny LLaMA
/// of Scripts/make-tiny-models quantized two ways, side networks and an adapter for it, and qst-synthetic's
/// tiny model (it carries a tokenizer, which qst-tune and qst-generate need).
final class BadInputFixtures {
    let dir: URL
    init(dir: URL) { self.dir = dir }

    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    static func tinyLlama() throws -> String {
        let env = ProcessInfo.processInfo.environment
        for d in [env["QST_TINY_MODELS"], ReferenceScripts.cache + "/tiny-models"].compactMap({ $0 })
        where FileManager.default.fileExists(atPath: d + "/tiny-llama/model.safetensors") { return d + "/tiny-llama" }
        try TestRequirement.unavailable(
            "tiny models missing; run Scripts/make-tiny-models \(ReferenceScripts.cache)/tiny-models")
    }

    /// Runs a tool that must succeed.
    func ok(_ tool: String, _ args: [String]) throws {
        let r = try ToolHarness.run(tool, args)
        // A fixture that cannot be built is a failure with the tool's own error, never a skip:
        // a skip here would silently remove every test that uses the fixture.
        guard r.status == 0 else {
            throw QSTError(
                "fixture step failed (exit \(r.status)): \(tool) \(args.joined(separator: " ")): \(r.stderr)")
        }
    }

    private var made: [String: String] = [:]
    private func once(_ key: String, _ make: () throws -> String) rethrows -> String {
        if let p = made[key] { return p }
        let p = try make()
        made[key] = p
        return p
    }

    var tiny: String { get throws { try once("tiny") { try Self.tinyLlama() } } }
    var base: String {
        get throws {
            try once("base") {
                try ok("qst-quantize", [try tiny, path("base.qst4")]); return path("base.qst4")
            }
        }
    }
    var other: String {
        get throws {
            try once("other") {
                try ok("qst-quantize", [try tiny, path("other.qst4"), "--block-size", "32"]); return path("other.qst4")
            }
        }
    }
    func side(r: Int) throws -> String {
        try once("side\(r)") {
            // The adapter downsampler, whose tensor names the README's error table quotes.
            try ok(
                "qst-init-side",
                [try base, "-o", path("side-r\(r)"), "--r", "\(r)", "--downsample", "adapter", "--adapter-hidden", "4"])
            return path("side-r\(r)")
        }
    }
    var adapter: String {
        get throws {
            try once("adapter") {
                try ok("qst-export", [try side(r: 2), "-o", path("adapter"), "--base", try base]);
                return path("adapter")
            }
        }
    }
    var synthetic: String {
        get throws {
            try once("synthetic") {
                try ok("qst-synthetic", ["tiny", "-o", path("synthetic.qst4")]); return path("synthetic.qst4")
            }
        }
    }
    var syntheticSide: String {
        get throws {
            try once("syntheticSide") {
                try ok("qst-init-side", [try synthetic, "-o", path("synthetic-side"), "--r", "16"]);
                return path("synthetic-side")
            }
        }
    }

    /// A copy of `file` at `name` with `edit` applied to its bytes.
    func edited(_ file: String, _ name: String, _ edit: (inout Data) throws -> Void) throws -> String {
        var d = try Data(contentsOf: URL(fileURLWithPath: file))
        try edit(&d)
        try d.write(to: URL(fileURLWithPath: path(name)))
        return path(name)
    }

    /// A copy of the folder `from` at `name`.
    func copyFolder(_ from: String, _ name: String) throws -> String {
        try? FileManager.default.removeItem(atPath: path(name))
        try FileManager.default.copyItem(atPath: from, toPath: path(name))
        return path(name)
    }

    /// `base` with one byte of a tensor's data flipped (its CRC-32C no longer matches).
    var corruptData: String {
        get throws {
            try once("corruptData") {
                let codes = try XCTUnwrap(
                    try QST4Container(path: try base).entry("model.layers.0.self_attn.q_proj.weight").parts["codes"])
                return try edited(try base, "corrupt-data.qst4") { $0[codes.offset] ^= 0xFF }
            }
        }
    }
}

/// Making a folder read-only or a file system full, as far as this machine allows.
enum HostileFileSystem {
    /// Runs a command, quietly; true on success.
    @discardableResult
    static func sh(_ command: String) -> Bool {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", command + " >/dev/null 2>&1"]
        do { try p.run() } catch { return false }
        p.waitUntilExit()
        return p.terminationStatus == 0
    }

    /// Makes `dir` unwritable: a read-only bind mount (root), else the immutable attribute, else permission
    /// bits (which stop everyone but root). Returns how, and the undo command; nil when nothing worked.
    static func makeReadOnly(_ dir: String) -> (how: String, undo: String)? {
        let q = "'\(dir)'"
        if sh("mount --bind \(q) \(q) && mount -o remount,bind,ro \(q) \(q)") {
            return ("read-only bind mount", "umount \(q)")
        }
        sh("umount \(q)")
        if sh("chattr +i \(q)") { return ("chattr +i", "chattr -i \(q)") }
        if sh("chmod 0555 \(q)"), !sh("touch \(q)/.probe") { return ("chmod 0555", "chmod 0755 \(q)") }
        sh("chmod 0755 \(q); rm -f \(q)/.probe")
        return nil
    }

    /// Mounts a tmpfs of `kilobytes` at `dir` (root only); the undo command, or nil.
    static func mountSmallTmpfs(_ dir: String, kilobytes: Int) -> String? {
        sh("mount -t tmpfs -o size=\(kilobytes)k tmpfs '\(dir)'") ? "umount '\(dir)'" : nil
    }
}
