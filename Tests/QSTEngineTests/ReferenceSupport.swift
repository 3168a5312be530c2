import Foundation
import XCTest
import QSTTestSupport
import QSTFormat
@testable import QSTEngine

/// Access to the independent NumPy reference (Scripts/reference_forward.py) and the test models.
/// Missing Python/models skip the test, unless QST_REQUIRE_REFERENCE=1 (CI), where they fail it.
enum Reference {
    static let env = ProcessInfo.processInfo.environment
    static let repoRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()
    static var scripts: String { repoRoot + "/Scripts" }
    static var cacheDir: String { TestEnvironment.cacheDir }
    static var python: String { TestEnvironment.python }
    static var required: Bool { env["QST_REQUIRE_REFERENCE"] == "1" }

    static func unavailable(_ what: String) throws -> Never {
        try TestRequirement.unavailable(what)
    }

    static func checkPython() throws {
        guard FileManager.default.isExecutableFile(atPath: python) else {
            try unavailable("no Python venv at \(python)")
        }
    }

    /// Runs a command, returns stdout; throws with stderr on failure.
    @discardableResult
    static func run(_ exe: String, _ args: [String]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw QSTError("\(exe) \(args.joined(separator: " ")) failed: \(String(decoding: e, as: UTF8.self))")
        }
        return String(decoding: o, as: UTF8.self)
    }

    static let tinyLock = NSLock()
    nonisolated(unsafe) static var tinyDir: String?

    /// Folder with the tiny synthetic models (QST_TINY_MODELS, else generated once into a temp folder).
    static func tinyModels() throws -> String {
        tinyLock.lock(); defer { tinyLock.unlock() }
        if let d = tinyDir { return d }
        if let d = env["QST_TINY_MODELS"], FileManager.default.fileExists(atPath: d + "/tiny-llama/config.json") {
            tinyDir = d; return d
        }
        try checkPython()
        let d = NSTemporaryDirectory() + "qst-engine-tiny-\(getpid())"
        try run(python, [scripts + "/make-tiny-models", d])
        tinyDir = d
        return d
    }

    static func tiny(_ name: String) throws -> String { try tinyModels() + "/" + name }

    /// The real SmolLM2 folder (f32 or bf16), or skip.
    static func realModel(_ kind: String) throws -> String {
        let key = kind == "f32" ? "QST_MODEL_F32" : "QST_MODEL_BF16"
        let path = env[key] ?? (cacheDir + "/models/SmolLM2-135M-Instruct-\(kind)")
        guard FileManager.default.fileExists(atPath: path + "/model.safetensors") else {
            try unavailable("SmolLM2 \(kind) folder not found at \(path)")
        }
        return path
    }

    /// Real-model tests are slow unoptimised: in debug builds they run only with QST_REAL_MODEL_TESTS=1.
    static func requireRealModelBuild() throws {
        #if DEBUG
            if env["QST_REAL_MODEL_TESTS"] != "1" {
                try TestRequirement.unavailable(
                    "real-model test skipped in debug builds (set QST_REAL_MODEL_TESTS=1)",
                    variable: "QST_REAL_MODEL_TESTS")
            }
        #endif
    }

    static func tempPath(_ name: String) -> String {
        NSTemporaryDirectory() + "qst-engine-\(getpid())-\(name)"
    }

    /// Reference float64 logits `[batch, T, vocab]` for right-padded sequences.
    static func logits(
        model: String, sequences: [[Int32]], override: String? = nil,
        fullAttention: Bool = false
    ) throws -> NPYArray {
        try checkPython()
        let out = tempPath("logits-\(UUID().uuidString).npy")
        defer { try? FileManager.default.removeItem(atPath: out) }
        var args = [scripts + "/reference_forward.py", model, "--out", out]
        for s in sequences { args += ["--ids", s.map(String.init).joined(separator: ",")] }
        if let override { args += ["--override-safetensors", override] }
        if fullAttention { args.append("--no-sliding-window") }
        try run(python, args)
        return try NPYArray(path: out)
    }

    /// Reference hidden states `[layers+1, batch, T, hidden]`.
    static func hidden(model: String, sequences: [[Int32]]) throws -> NPYArray {
        try checkPython()
        let out = tempPath("l-\(UUID().uuidString).npy"), hid = tempPath("h-\(UUID().uuidString).npy")
        defer { for f in [out, hid] { try? FileManager.default.removeItem(atPath: f) } }
        var args = [scripts + "/reference_forward.py", model, "--out", out, "--hidden-out", hid]
        for s in sequences { args += ["--ids", s.map(String.init).joined(separator: ",")] }
        try run(python, args)
        return try NPYArray(path: hid)
    }

    static func greedy(model: String, prompt: [Int32], count: Int, override: String? = nil) throws -> [Int32] {
        try checkPython()
        var args = [
            scripts + "/reference_forward.py", model, "--greedy", String(count),
            "--prompt-ids", prompt.map(String.init).joined(separator: ","),
        ]
        if let override { args += ["--override-safetensors", override] }
        let out = try run(python, args)
        let ids = try JSONDecoder().decode([Int32].self, from: Data(out.utf8))
        return ids
    }
}

extension Reference {
    /// Greedy continuations of several prompts with one reference model load (the reference's Python API).
    static func greedyMany(model: String, prompts: [[Int32]], count: Int, override: String? = nil) throws -> [[Int32]] {
        try checkPython()
        let code = """
            import json, sys
            sys.path.insert(0, sys.argv[1])
            from reference_forward import ReferenceModel
            m = ReferenceModel(sys.argv[2], sys.argv[3] or None)
            print(json.dumps([m.greedy(p, int(sys.argv[5])) for p in json.loads(sys.argv[4])]))
            """
        let promptJSON =
            "[" + prompts.map { "[" + $0.map(String.init).joined(separator: ",") + "]" }.joined(separator: ",") + "]"
        let out = try run(python, ["-c", code, scripts, model, override ?? "", promptJSON, String(count)])
        return try JSONDecoder().decode([[Int32]].self, from: Data(out.utf8))
    }
}

/// A float64 (`<f8`) or float32 (`<f4`) .npy array.
struct NPYArray {
    var shape: [Int]
    var values: [Double]

    init(path: String) throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        guard data.count > 10, data.prefix(6) == Data([0x93] + Array("NUMPY".utf8)) else {
            throw QSTError.file(path, "not .npy")
        }
        let major = data[6]
        let headerLen: Int, start: Int
        if major == 1 {
            headerLen = Int(data[8]) | Int(data[9]) << 8; start = 10
        } else {
            headerLen = Int(data[8]) | Int(data[9]) << 8 | Int(data[10]) << 16 | Int(data[11]) << 24; start = 12
        }
        let header = String(decoding: data[start..<start + headerLen], as: UTF8.self)
        guard let sOpen = header.range(of: "'shape': ("), let sClose = header[sOpen.upperBound...].firstIndex(of: ")")
        else {
            throw QSTError.file(path, "npy header without shape")
        }
        shape = header[sOpen.upperBound..<sClose].split(separator: ",").compactMap {
            Int($0.trimmingCharacters(in: .whitespaces))
        }
        let count = shape.reduce(1, *)
        let body = data[(start + headerLen)...]
        if header.contains("'<f8'") {
            values = body.withUnsafeBytes { raw in
                (0..<count).map { raw.loadUnaligned(fromByteOffset: $0 * 8, as: Double.self) }
            }
        } else if header.contains("'<f4'") {
            values = body.withUnsafeBytes { raw in
                (0..<count).map { Double(raw.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self)) }
            }
        } else {
            throw QSTError.file(path, "unsupported npy dtype: \(header)")
        }
    }
}

/// Engine logits at the real (unpadded) positions, flattened like the reference's `[b, t, :]` for t < len.
func validRows(_ logits: [Float], lengths: [Int], seqLen: Int, vocab: Int) -> [Double] {
    var out: [Double] = []
    for (b, len) in lengths.enumerated() {
        for t in 0..<len { out += logits[((b * seqLen + t) * vocab)..<((b * seqLen + t + 1) * vocab)].map(Double.init) }
    }
    return out
}

func validRows(_ ref: NPYArray, lengths: [Int]) -> [Double] {
    let T = ref.shape[1], V = ref.shape[2]
    var out: [Double] = []
    for (b, len) in lengths.enumerated() {
        for t in 0..<len { out += ref.values[((b * T + t) * V)..<((b * T + t + 1) * V)] }
    }
    return out
}

/// Writes every tensor of a container, decoded to F32, into one safetensors file (the reference's override).
func writeDecodedWeights(container path: String, to out: String) throws {
    let c = try QST4Container(path: path)
    var tensors: [SafetensorsTensorData] = []
    for e in c.header.tensors {
        tensors.append(try SafetensorsTensorData(name: e.name, shape: e.shape, floats: try c.floats(e.name)))
    }
    try SafetensorsWriter.write(to: out, tensors: tensors)
}

/// Builds a container from a HF folder with the library (not the CLI).
func buildContainer(
    from folder: String, to out: String, keepAll: Bool = false, keptDtype: DType = .bf16,
    quantizeEmbeddings: Bool = false
) throws {
    var policy = QuantizationPolicy()
    policy.keptDtype = keptDtype
    policy.quantizeEmbeddings = quantizeEmbeddings
    if keepAll { policy.keepPatterns = [".*"] }
    _ = try QST4Quantize(source: folder, output: out, policy: policy, createdBy: "QSTEngineTests").run()
}
