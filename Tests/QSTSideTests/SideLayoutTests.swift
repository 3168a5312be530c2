import Foundation
import QSTEngine
import QSTFormat
import QSTNN
import XCTest
import QSTTestSupport
@testable import QSTSide

/// Layout, initialisation, validation and persistence against the spec (Formats/SIDE.md, Formats/RUNS.md §1) and the
/// reference implementation's state-dict names.
final class SideLayoutTests: XCTestCase {
    /// SmolLM2-135M's shape.
    let smol = BaseShape(
        hiddenSize: 576, layerCount: 30, attentionHeads: 9, keyValueHeads: 3,
        intermediateSize: 1536, vocabSize: 49152, rmsNormEps: 1e-5, ropeTheta: 100000)

    func testReferenceTensorNamesAndShapesForAdapter() throws {
        let w = try SideWeights(config: SideConfig(base: smol))
        let byName = Dictionary(uniqueKeysWithValues: w.specs.map { ($0.name, $0.shape) })
        // Width 576/16 = 36, head size 36/9 = 4, kv width 3·4 = 12, MLP 1536/16 = 96.
        let expected: [String: [Int]] = [
            "model.downsample.0.adapter_A.weight": [16, 576], "model.downsample.29.adapter_B.weight": [36, 16],
            "model.downsample.3.post_layer_norm.weight": [36], "model.downsample.3.post_layer_norm.bias": [36],
            "model.z.0": [36], "model.z.29": [36],
            "model.qst_layers.0.self_attn.q_proj.weight": [36, 36],
            "model.qst_layers.0.self_attn.k_proj.weight": [12, 36],
            "model.qst_layers.0.self_attn.v_proj.weight": [12, 36],
            "model.qst_layers.0.self_attn.o_proj.weight": [36, 36],
            "model.qst_layers.7.mlp.gate_proj.weight": [96, 36], "model.qst_layers.7.mlp.up_proj.weight": [96, 36],
            "model.qst_layers.7.mlp.down_proj.weight": [36, 96], "model.qst_layers.7.input_layernorm.weight": [36],
            "model.qst_layers.7.post_attention_layernorm.weight": [36], "model.norm_qst.weight": [36],
            "upsample.weight": [576, 36], "upsample.bias": [576], "lm_head_z": [576],
        ]
        for (name, shape) in expected { XCTAssertEqual(byName[name], shape, name) }
        XCTAssertEqual(w.specs.count, 30 * 4 + 30 + 30 * 9 + 4)
        // Count by hand: per layer adapter 576·16 + 16·36 + 72, gate 36, block 2·36 + 36·36·2 + 12·36·2 + 3·96·36.
        let perLayer = (576 * 16 + 16 * 36 + 72) + 36 + (72 + 2 * 36 * 36 + 2 * 12 * 36 + 3 * 96 * 36)
        XCTAssertEqual(w.parameterCount, 30 * perLayer + 36 + 576 * 36 + 576 + 576)
    }

    func testInitialisationFollowsPyTorchDefaults() throws {
        let w = try SideWeights(config: SideConfig(base: smol, downsample: .linear))
        w.initialize(seed: 42)
        for s in w.specs {
            let v = (0..<s.count).map { w.values[s.offset + $0] }
            switch s.initKind {
            case .uniformFanIn:
                let bound = 1 / Float(s.fanIn).squareRoot()
                assertWithin(
                    Closeness.maxAbsoluteError(v, [Float](repeating: 0, count: v.count)), Double(bound), s.name)
                if s.count >= 500 {
                    // U(−b, b) has mean 0 and variance b²/3.
                    let mean = v.reduce(0, +) / Float(v.count)
                    let variance = v.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Float(v.count)
                    XCTAssertEqual(variance / (bound * bound / 3), 1, accuracy: 0.1, s.name)
                    XCTAssertLessThan(abs(mean), 0.1 * bound, s.name)
                }
            case .ones: XCTAssertTrue(v.allSatisfy { $0 == 1 }, s.name)
            case .zeros: XCTAssertTrue(v.allSatisfy { $0 == 0 }, s.name)
            case .constant:
                XCTAssertTrue(v.allSatisfy { $0 == (s.name == "lm_head_z" ? 1.0 : 0.5) }, s.name)
            }
        }
        XCTAssertEqual(w.spec("upsample.bias")?.fanIn, 36, "bias bound uses the layer's fan_in")
        let again = try SideWeights(config: w.config)
        again.initialize(seed: 42)
        XCTAssertTrue(again.values.array == w.values.array, "same seed, same weights")
        again.initialize(seed: 43)
        XCTAssertFalse(again.values.array == w.values.array)
    }

    func testInvalidReductionSuggestsValidOnes() throws {
        XCTAssertThrowsError(try SideWeights(config: SideConfig(base: smol, r: 12))) { e in
            let m = "\(e)"
            XCTAssertTrue(m.contains("r=12") && m.contains("valid r: 1, 2, 4, 8, 16, 32"), m)
        }
        XCTAssertEqual(SideConfig.validReductions(hiddenSize: 576, heads: 9), [1, 2, 4, 8, 16, 32])
    }

    func testConfigFromHuggingFaceJSON() throws {
        let json =
            #"{"model_type": "llama", "hidden_size": 576, "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,"#
            + #" "intermediate_size": 1536, "vocab_size": 49152, "rms_norm_eps": 1e-05, "rope_theta": 100000.0, "hidden_act": "silu"}"#
        XCTAssertEqual(try BaseShape.parse(configJSON: Data(json.utf8), context: "config.json"), smol)
        let partial = #"{"model_type": "llama", "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1}"#
        XCTAssertThrowsError(try BaseShape.parse(configJSON: Data(partial.utf8), context: "c.json")) {
            XCTAssertTrue("\($0)".contains("c.json") && "\($0)".contains("num_attention_heads"), "\($0)")
        }
    }

    func testSaveLoadRoundTripAndShapeErrors() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("side-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let c = SideConfig(base: SideFixtures.tinyShape, r: 2, adapterHidden: 3, seed: 5)
        let w = try SideFixtures.weights(c)
        try SideWeightsIO.save(w, directory: dir)
        let back = try SideWeightsIO.load(directory: dir)
        XCTAssertEqual(back.config, c)
        XCTAssertTrue(back.values.array == w.values.array, "weights differ after a round trip")
        let file = try SafetensorsFile(path: dir + "/side.safetensors")
        XCTAssertEqual(try SideConfig.decode(Data((file.metadata["side_config"] ?? "").utf8), context: "meta"), c)
        // Without side_config.json the metadata suffices.
        try FileManager.default.removeItem(atPath: dir + "/side_config.json")
        XCTAssertTrue(try SideWeightsIO.load(directory: dir).values.array == w.values.array)
        // A file for another layout is refused with the tensor named.
        var other = c
        other.downsample = .linear
        XCTAssertThrowsError(try SideWeightsIO.read(into: try SideWeights(config: other), file: file)) {
            XCTAssertTrue("\($0)".contains("adapter_A"), "\($0)")
        }
    }
}
