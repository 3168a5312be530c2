import Foundation
import XCTest
@testable import QSTFormat

/// Paths and small builders shared by the container tests.
enum QST4TestSupport {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static var golden: URL { repo.appendingPathComponent("Formats/golden") }

    static func temporaryDirectory() throws -> URL {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("qst4-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        return d
    }

    /// A tiny model folder (config.json + model.safetensors) with deterministic weights.
    static func tinyModelFolder(in dir: URL, seed: UInt64 = 7) throws -> URL {
        var rng = SplitMix(seed)
        func randn(_ n: Int, _ s: Float) -> [Float] { (0..<n).map { _ in rng.normal() * s } }
        let folder = dir.appendingPathComponent("model")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let tensors: [SafetensorsTensorData] = [
            try .init(name: "model.embed_tokens.weight", shape: [32, 16], floats: randn(512, 1)),
            try .init(
                name: "model.layers.0.input_layernorm.weight", shape: [16], floats: randn(16, 0.1).map { $0 + 1 }),
            try .init(name: "model.layers.0.self_attn.q_proj.weight", shape: [16, 16], floats: randn(256, 0.2)),
            try .init(name: "model.layers.0.mlp.up_proj.weight", shape: [40, 16], floats: randn(640, 0.2)),
            try .init(name: "model.layers.1.self_attn.q_proj.weight", shape: [16, 16], floats: randn(256, 0.2)),
            try .init(name: "model.norm.weight", shape: [16], floats: randn(16, 0.1).map { $0 + 1 }),
        ]
        try SafetensorsWriter.write(to: folder.appendingPathComponent("model.safetensors").path, tensors: tensors)
        let config = #"{"model_type": "llama", "hidden_size": 16, "num_hidden_layers": 2, "vocab_size": 32}"#
        try Data(config.utf8).write(to: folder.appendingPathComponent("config.json"))
        return folder
    }

    struct SplitMix {
        var state: UInt64
        init(_ seed: UInt64) { state = seed }
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func uniform() -> Float { Float(next() >> 40) / Float(1 << 24) }
        mutating func normal() -> Float {
            let u = max(uniform(), 1e-7), v = uniform()
            return (-2 * log(u)).squareRoot() * cos(2 * .pi * v)
        }
    }
}
