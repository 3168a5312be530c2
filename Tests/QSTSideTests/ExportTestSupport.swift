import Foundation
import QSTEngine
import QSTFormat
import QSTNN
import XCTest
import QSTTestSupport
@testable import QSTSide

/// Inputs for the export and inference tests: the tiny LLaMA of Scripts/make-tiny-models quantized to a
/// real NF4 container (built once per process), side networks with perturbed weights, the Python venv.
enum ExportFixtures {
    static let env = ProcessInfo.processInfo.environment
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path
    static var cacheDir: String { TestEnvironment.cacheDir }
    static var python: String { TestEnvironment.python }
    static let lock = NSLock()
    nonisolated(unsafe) static var built: [String: String] = [:]

    static func unavailable(_ what: String) throws -> Never {
        try TestRequirement.unavailable(what)
    }

    static func scratch(_ name: String) throws -> String {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent(
            "qst-export-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        return d.appendingPathComponent(name).path
    }

    /// `side` exported as an F32 adapter for `base` into a new scratch folder `name`; returns the folder.
    static func exportAdapter(_ side: SideWeights, base: FrozenModel, name: String, checkpoint: String = "test")
        throws -> String
    {
        let dir = try scratch(name)
        try AdapterIO.save(
            side,
            config: AdapterConfig(
                base: try BaseIdentity.of(base.source), side: side.config, dtype: .f32,
                origin: ExportOrigin(checkpoint: checkpoint)), directory: dir)
        return dir
    }

    /// The tiny-llama folder (QST_TINY_MODELS, the cache, else generated with the venv's Python).
    static func tinyLlama() throws -> String {
        for d in [env["QST_TINY_MODELS"], cacheDir + "/tiny-models"].compactMap({ $0 })
        where FileManager.default.fileExists(atPath: d + "/tiny-llama/model.safetensors") {
            return d + "/tiny-llama"
        }
        guard FileManager.default.isExecutableFile(atPath: python) else {
            try unavailable("no tiny models and no Python at \(python)")
        }
        let d = NSTemporaryDirectory() + "qst-export-tiny-\(getpid())"
        if !FileManager.default.fileExists(atPath: d + "/tiny-llama/model.safetensors") {
            try run(python, [repo + "/Scripts/make-tiny-models", d])
        }
        return d + "/tiny-llama"
    }

    /// tiny-llama as an NF4 container (default policy, block 64; its 64-wide rows quantize).
    static func tinyContainer() throws -> String {
        lock.lock(); defer { lock.unlock() }
        if let p = built["tiny"] { return p }
        let folder = try tinyLlama()
        let out = NSTemporaryDirectory() + "qst-export-\(getpid())-tiny.qst4"
        _ = try QST4Quantize(source: folder, output: out, policy: QuantizationPolicy(), createdBy: "ExportTests").run()
        built["tiny"] = out
        return out
    }

    /// A side network for `base` with the reference init perturbed (gates, norms, biases off their special values).
    static func sideWeights(for base: FrozenModel, r: Int = 2, kind: DownsampleKind = .adapter, seed: UInt64 = 5) throws
        -> SideWeights
    {
        let shape = try BaseShape.parse(configJSON: try base.source.configJSON(), context: "test")
        let w = try SideWeights(config: SideConfig(base: shape, r: r, downsample: kind, adapterHidden: 4, seed: seed))
        w.initialize(seed: seed)
        var rng = SplitMix64(seed: seed &+ 17)
        for s in w.specs { for j in 0..<s.count { w.values[s.offset + j] += 0.3 * (rng.nextFloat() - 0.5) } }
        return w
    }

    @discardableResult
    static func run(_ exe: String, _ args: [String]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw QSTError("\(exe) \(args.joined(separator: " ")) failed: \(String(decoding: e, as: UTF8.self))")
        }
        return String(decoding: o, as: UTF8.self)
    }

    /// Float64 logits `[B, T, V]` (flattened) from Scripts/tuned_reference.py.
    /// Without `adapter`, the script reads the side network from the container's sections.side itself.
    static func referenceLogits(container: String, adapter: String?, sequences: [[Int32]]) throws -> [Double] {
        guard FileManager.default.isExecutableFile(atPath: python) else {
            try unavailable("no Python venv at \(python)")
        }
        let out = try scratch("ref.npy")
        var args = [repo + "/Scripts/tuned_reference.py", container] + (adapter.map { [$0] } ?? []) + ["--out", out]
        for s in sequences { args += ["--ids", s.map(String.init).joined(separator: ",")] }
        try run(python, args)
        return try readNPYFloat64(out)
    }

    /// A little-endian float64 .npy file's values.
    static func readNPYFloat64(_ path: String) throws -> [Double] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        guard data.count > 10, data.prefix(6) == Data([0x93] + Array("NUMPY".utf8)) else {
            throw QSTError.file(path, "not .npy")
        }
        let major = data[6]
        let start = major == 1 ? 10 : 12
        let headerLen =
            major == 1
            ? Int(data[8]) | Int(data[9]) << 8
            : Int(data[8]) | Int(data[9]) << 8 | Int(data[10]) << 16 | Int(data[11]) << 24
        let header = String(decoding: data[start..<start + headerLen], as: UTF8.self)
        guard header.contains("'<f8'"), header.contains("'fortran_order': False") else {
            throw QSTError.file(path, "not C-order float64")
        }
        let body = data[(start + headerLen)...]
        return body.withUnsafeBytes { raw in
            (0..<(raw.count / 8)).map { raw.loadUnaligned(fromByteOffset: $0 * 8, as: Double.self) }
        }
    }

    /// Logits at real positions, flattened `[b, t, :]` for t < length.
    static func validRows(_ values: [Double], lengths: [Int], seqLen: Int, vocab: Int) -> [Double] {
        var out: [Double] = []
        for (b, len) in lengths.enumerated() {
            for t in 0..<len { out += values[((b * seqLen + t) * vocab)..<((b * seqLen + t + 1) * vocab)] }
        }
        return out
    }
}
