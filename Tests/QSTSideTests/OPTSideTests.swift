import Foundation
import QSTEngine
import QSTFormat
import QSTNN
import XCTest
@testable import QSTSide
import QSTTestSupport

/// A MockBackbone whose LM head reads a narrower linear projection of the final state, as OPT-350m's
/// project_out (word_embed_proj_dim < hidden_size); head `[V, e]` of its own.
final class ProjectedMockBackbone: FrozenBackbone {
    let inner: MockBackbone
    let headInputSize: Int
    let projection: FloatBuffer
    let head: FloatBuffer
    var hiddenSize: Int { inner.hiddenSize }
    var layerCount: Int { inner.layerCount }
    var vocabSize: Int { inner.vocabSize }
    var intermediateSize: Int { inner.intermediateSize }
    var attentionHeads: Int { inner.attentionHeads }
    var keyValueHeads: Int { inner.keyValueHeads }

    init(shape s: BaseShape) {
        inner = MockBackbone(shape: s)
        headInputSize = s.headSize
        var rng = SplitMix64(seed: 99)
        let d = s.hiddenSize, e = s.headSize
        projection = FloatBuffer((0..<(e * d)).map { _ in rng.nextGaussian() / Float(d).squareRoot() })
        head = FloatBuffer((0..<(s.vocabSize * e)).map { _ in rng.nextGaussian() })
    }

    func forwardHiddenStates(_ batch: TokenBatch, visit: (Int, UnsafePointer<Float>) throws -> Void) throws -> [Float] {
        let final = try inner.forwardHiddenStates(batch, visit: visit)
        let n = batch.ids.count, d = hiddenSize, e = headInputSize
        var out = [Float](repeating: 0, count: n * e)
        for r in 0..<n {
            for j in 0..<e { for k in 0..<d { out[r * e + j] += final[r * d + k] * projection[j * d + k] } }
        }
        return out
    }

    func headRows() -> HeadRows {
        F32HeadRows(weight: head.constPointer, vocabSize: vocabSize, dim: headInputSize, tileRows: 5)
    }
}

enum OPTSideFixtures {
    /// d 16 (or `hidden`), 2 layers, 2 heads, ffn 24, vocab 11; an OPT base as BaseShape.parse would read it.
    static func shape(
        pre: Bool, proj: Int? = nil, bias: Bool = true, act: String = "gelu", hidden: Int = 16,
        affine: Bool = true
    ) -> BaseShape {
        BaseShape(
            hiddenSize: hidden, layerCount: 2, attentionHeads: 2, keyValueHeads: 2, intermediateSize: 24, vocabSize: 11,
            rmsNormEps: 1e-5, ropeTheta: 10000, hiddenAct: act, modelFamily: "opt", layerNormBefore: pre,
            headInputSize: proj ?? hidden, bias: bias, affineNorms: affine ? nil : false)
    }

    static func backbone(_ s: BaseShape) -> any FrozenBackbone {
        s.headSize == s.hiddenSize ? MockBackbone(shape: s) : ProjectedMockBackbone(shape: s)
    }

    /// A Scripts/make-tiny-models OPT folder (beside tiny-llama), else skip.
    static func tinyOPT(_ name: String) throws -> String {
        let dir = (try ExportFixtures.tinyLlama() as NSString).deletingLastPathComponent + "/" + name
        guard FileManager.default.fileExists(atPath: dir + "/model.safetensors") else {
            try ExportFixtures.unavailable("\(dir) missing: rerun Scripts/make-tiny-models")
        }
        return dir
    }
}

extension SideGradientTests {
    func testOPTPreNormBlocksGradients() throws {
        try checkAllTensors(
            SideConfig(
                base: OPTSideFixtures.shape(pre: true), r: 2, downsample: .adapter, adapterHidden: 3,
                dropout: 0.25, seed: 1))
    }

    func testOPTPostNormProjectedHeadGradients() throws {
        let s = OPTSideFixtures.shape(pre: false, proj: 8)
        try checkAllTensors(
            SideConfig(base: s, r: 2, downsample: .linear, dropout: 0.1, seed: 1),
            backbone: OPTSideFixtures.backbone(s))
    }

    /// No biases (enable_bias false) and an odd head size (no RoPE, so r need not keep it even).
    func testOPTWithoutBiasOddHeadGradients() throws {
        try checkAllTensors(
            SideConfig(
                base: OPTSideFixtures.shape(pre: true, bias: false, hidden: 12), r: 2,
                downsample: .avgpool, seed: 1))
    }

    /// layer_norm_elementwise_affine false: LayerNorms without parameters, pre- and post-norm.
    func testOPTNonAffineNormGradients() throws {
        for pre in [true, false] {
            try checkAllTensors(
                SideConfig(
                    base: OPTSideFixtures.shape(pre: pre, bias: false, affine: false), r: 2,
                    downsample: .linear, seed: 1))
        }
    }
}

extension SideReferenceTests {
    func testOPTPreNormNetworkMatchesFloat64Reference() throws {
        try check(
            SideConfig(
                base: OPTSideFixtures.shape(pre: true, act: "relu"), r: 2, downsample: .adapter,
                adapterHidden: 3, dropout: 0.1))
    }

    func testOPTResidualHeadMixMatchesFloat64Reference() throws {
        try check(
            SideConfig(
                base: OPTSideFixtures.shape(pre: true, act: "relu"), r: 2, downsample: .adapter,
                adapterHidden: 3, headMix: .residual))
    }

    func testOPTNonAffineNetworkMatchesFloat64Reference() throws {
        try check(
            SideConfig(
                base: OPTSideFixtures.shape(pre: true, bias: false, act: "relu", affine: false), r: 2,
                downsample: .avgpool))
    }

    func testOPTPostNormProjectedNetworkMatchesFloat64Reference() throws {
        let s = OPTSideFixtures.shape(pre: false, proj: 8, act: "relu")
        let backbone = ProjectedMockBackbone(shape: s)
        try check(SideConfig(base: s, r: 2, downsample: .linear), backbone: backbone, head: backbone.head.array)
    }
}

final class OPTSideTests: XCTestCase {
    func testLayoutUsesReferenceNamesAndInit() throws {
        let pre = try SideWeights(config: SideConfig(base: OPTSideFixtures.shape(pre: true), r: 2))
        pre.initialize(seed: 0)
        let names = Set(pre.specs.map(\.name))
        for n in [
            "model.decoder.downsample.1.adapter_A.weight", "model.decoder.z.1",
            "model.decoder.final_layer_norm_qst.bias",
            "model.decoder.qst_layers.1.self_attn.out_proj.bias", "model.decoder.qst_layers.0.fc1.weight",
            "model.decoder.qst_layers.0.final_layer_norm.weight", "upsample.bias", "lm_head_z",
        ] {
            XCTAssertTrue(names.contains(n), n)
        }
        XCTAssertFalse(names.contains { $0.hasPrefix("model.qst_layers") || $0 == "model.norm_qst.weight" })
        XCTAssertEqual(pre.spec("model.decoder.qst_layers.0.fc1.weight")?.shape, [12, 8])
        XCTAssertEqual(pre.values[pre.spec("lm_head_z")!.offset], -1, "the reference's +1 in our head convention")
        XCTAssertEqual(pre.values[pre.spec("model.decoder.z.0")!.offset], 0.5)

        let post = try SideWeights(
            config: SideConfig(base: OPTSideFixtures.shape(pre: false, proj: 8, bias: false), r: 2))
        let postNames = Set(post.specs.map(\.name))
        XCTAssertFalse(
            postNames.contains("model.decoder.final_layer_norm_qst.weight"), "350m: no final norm on the side")
        XCTAssertFalse(postNames.contains { $0.hasSuffix("proj.bias") || $0.hasSuffix("fc1.bias") })
        XCTAssertEqual(post.spec("upsample.weight")?.shape, [8, 8])
        XCTAssertEqual(post.spec("lm_head_z")?.shape, [8])

        let plain = try SideWeights(config: SideConfig(base: OPTSideFixtures.shape(pre: true, affine: false), r: 2))
        XCTAssertFalse(
            plain.specs.contains { $0.name.contains("_layer_norm") && !$0.name.contains("downsample") },
            "no block or final LayerNorm parameters without affine norms")
    }

    func testBaseShapeFromOPTConfig() throws {
        let json =
            #"{"model_type": "opt", "hidden_size": 64, "ffn_dim": 96, "num_hidden_layers": 3, "num_attention_heads": 4,"#
            + #" "vocab_size": 300, "max_position_embeddings": 2048, "word_embed_proj_dim": 32, "do_layer_norm_before": false, "activation_function": "relu"}"#
        let s = try BaseShape.parse(configJSON: Data(json.utf8), context: "config.json")
        XCTAssertEqual(
            s,
            OPTSideFixtures.shape(pre: false, proj: 32, act: "relu", hidden: 64).with(
                layers: 3, ffn: 96, vocab: 300, heads: 4))
        let bad = json.replacingOccurrences(of: "\"relu\"", with: "\"silu\"")
        XCTAssertThrowsError(try BaseShape.parse(configJSON: Data(bad.utf8), context: "config.json")) {
            XCTAssertTrue("\($0)".contains("activation_function"), "\($0)")
        }
        // No RoPE: a whole head size is enough (hidden 64 / r 8 / 4 heads = 2; r 16 gives 1).
        XCTAssertNoThrow(try SideConfig(base: s, r: 16).validate())
        XCTAssertThrowsError(try SideConfig(base: s, r: 32).validate())
    }

    /// An OPT adapter never attaches to a LLaMA-family base of the same dimensions (nor the reverse).
    func testFamilyMismatchIsRefused() throws {
        let opt = OPTSideFixtures.shape(pre: true)
        var llama = opt
        llama.modelFamily = nil; llama.layerNormBefore = nil; llama.headInputSize = nil; llama.bias = nil
        let a = BaseIdentity(
            architecture: "OPTForCausalLM", modelType: "opt", dimensions: opt, tensorDirectorySHA256: nil)
        let b = BaseIdentity(
            architecture: "LlamaForCausalLM", modelType: "llama", dimensions: llama, tensorDirectorySHA256: nil)
        XCTAssertThrowsError(try a.check(base: b, adapter: "a/", baseOrigin: "base.qst4")) {
            XCTAssertTrue("\($0)".contains("an OPT base, but base.qst4 is LLaMA-family"), "\($0)")
        }
        XCTAssertThrowsError(try b.check(base: a, adapter: "b/", baseOrigin: "opt.qst4"))
        XCTAssertNoThrow(try a.check(base: a, adapter: "a/", baseOrigin: "opt.qst4"))
    }

    /// Exported `lm_head_z` is the reference's (negated) logit; loading maps it back; other tensors are unchanged.
    func testExportMapsHeadGateAndLoadMapsBack() throws {
        let s = OPTSideFixtures.shape(pre: true)
        let w = try SideFixtures.weights(SideConfig(base: s, r: 2))
        let ours = Array(UnsafeBufferPointer(start: w.value("lm_head_z"), count: s.headSize))
        let identity = BaseIdentity(
            architecture: "OPTForCausalLM", modelType: "opt", dimensions: s, tensorDirectorySHA256: nil)
        let config = AdapterConfig(
            base: identity, side: w.config, dtype: .f32, origin: ExportOrigin(checkpoint: "test"))
        XCTAssertEqual(config.tensorNames, "QSTOPTForCausalLM.state_dict")
        let dir = try ExportFixtures.scratch("opt-adapter")
        try AdapterIO.save(w, config: config, directory: dir)
        let file = try SafetensorsFile(path: dir + "/" + AdapterIO.weightsFileName)
        XCTAssertEqual(try file.floats("lm_head_z"), ours.map { -$0 })
        let fc1 = w.spec("model.decoder.qst_layers.0.fc1.weight")!
        XCTAssertEqual(
            try file.floats(fc1.name), Array(UnsafeBufferPointer(start: w.value(fc1.name), count: fc1.count)))
        let loaded = try AdapterIO.load(directory: dir)
        XCTAssertEqual(loaded.weights.values.array, w.values.array)
    }

    /// Beside the real tiny OPT-350m-like base: the tuned model's incremental decoding equals its full forward,
    /// which equals the training forward (itself checked against the float64 reference above).
    func testInferenceBesideTinyOPTMatchesTrainingForward() throws {
        let base = try FrozenModel(
            path: try OPTSideFixtures.tinyOPT("tiny-opt-350m"),
            options: EngineOptions(matmulPath: .dequantizeSGEMM))
        let side = try ExportFixtures.sideWeights(for: base, r: 4)
        XCTAssertTrue(side.config.base.isOPT)
        let seqs: [[Int32]] = [[2, 17, 42, 99, 5, 250, 7, 3, 64], [2, 200, 13, 8, 111]]
        let batch = TokenBatch(sequences: seqs)
        let e = base.headInputSize
        let training = try SideModel(weights: side, backbone: base).outputHidden(batch)
        let model = try TunedModel(base: base, sides: [side])
        let valid = Attention.maskFromLengths(batch.lengths, seqLen: batch.seqLen)
        let inference = try model.forward(ids: batch.ids, batch: batch.batch, newTokens: batch.seqLen, valid: valid)
            .heads[0]
        let a = ExportFixtures.validRows(
            inference.array.map(Double.init), lengths: batch.lengths, seqLen: batch.seqLen, vocab: e)
        let b = ExportFixtures.validRows(
            training.array.map(Double.init), lengths: batch.lengths, seqLen: batch.seqLen, vocab: e)
        XCTAssertLessThan(relativeFrobenius(a, b), 1e-5)
        let plain = try base.forward(ids: batch.ids, batch: batch.batch, newTokens: batch.seqLen, valid: valid)
        let c = ExportFixtures.validRows(
            plain.array.map(Double.init), lengths: batch.lengths, seqLen: batch.seqLen, vocab: e)
        XCTAssertGreaterThan(relativeFrobenius(c, b), 1e-2, "the side network changes the head input")

        let ids = seqs[0]
        let cache = try model.makeCache(batch: 1, capacity: ids.count, routing: .shared)
        var rows = try model.forward(ids: Array(ids[0..<4]), batch: 1, newTokens: 4, cache: cache).heads[0].array
        for t in 4..<ids.count {
            rows += try model.forward(ids: [ids[t]], batch: 1, newTokens: 1, cache: cache).heads[0].array
        }
        let full = try model.forward(ids: ids, batch: 1, newTokens: ids.count).heads[0]
        XCTAssertLessThan(relativeFrobenius(rows.map(Double.init), full.array.map(Double.init)), 1e-5)
    }
}

extension OPTSideTests {
    /// Tuned logits beside NF4 OPT containers (pre-norm and the 350m-like shape) against tuned_reference.py:
    /// a float64 base decoded by the spec-only container reader plus the exported adapter (reference convention,
    /// mixed with the reference's σ(z)·up + (1 − σ(z))·h) — and the merged container's attached copy.
    func testTunedLogitsMatchFloat64ReferenceOnTinyOPTContainers() throws {
        let sequences: [[Int32]] = [[2, 17, 42, 99, 5, 250, 7, 3, 64], [2, 200, 13, 8, 111]]
        for name in ["tiny-opt", "tiny-opt-350m", "tiny-opt-nobias"] {
            let container = try ExportFixtures.scratch(name + ".qst4")
            _ = try QST4Quantize(
                source: try OPTSideFixtures.tinyOPT(name), output: container, policy: QuantizationPolicy(),
                createdBy: "OPTSideTests"
            ).run()
            let base = try FrozenModel(path: container, options: EngineOptions(matmulPath: .dequantizeSGEMM))
            let side = try ExportFixtures.sideWeights(for: base, r: 4, kind: .adapter)
            let dir = try ExportFixtures.scratch(name + "-adapter")
            let config = AdapterConfig(
                base: try BaseIdentity.of(base.source), side: side.config, dtype: .f32,
                origin: ExportOrigin(checkpoint: "test"))
            try AdapterIO.save(side, config: config, directory: dir)
            let merged = try ExportFixtures.scratch(name + "-tuned.qst4")
            try MergedContainer.write(
                base: try QST4Container(path: container), weights: side, adapter: config, output: merged)

            let batch = TokenBatch(sequences: sequences)
            let V = base.vocabSize
            func rows(_ v: [Double]) -> [Double] {
                ExportFixtures.validRows(v, lengths: batch.lengths, seqLen: batch.seqLen, vocab: V)
            }
            let swift = rows(try TunedModel(base: base, sides: [side]).logits(batch)[0].array.map(Double.init))
            let ref = rows(try ExportFixtures.referenceLogits(container: container, adapter: dir, sequences: sequences))
            XCTAssertLessThan(
                relativeFrobenius(swift, ref), 1e-5, "\(name): tuned logits vs float64 reference")
            let attached = rows(
                try ExportFixtures.referenceLogits(container: merged, adapter: nil, sequences: sequences))
            XCTAssertLessThan(
                relativeFrobenius(swift, attached), 1e-5, "\(name): merged container's side network")
            let plain = rows(try base.logits(batch).array.map(Double.init))
            XCTAssertGreaterThan(
                relativeFrobenius(plain, ref), 1e-2, "\(name): the side network changes the logits")
        }
    }
}

private extension BaseShape {
    func with(layers: Int, ffn: Int, vocab: Int, heads: Int) -> BaseShape {
        var s = self
        s.layerCount = layers; s.intermediateSize = ffn; s.vocabSize = vocab; s.attentionHeads = heads;
        s.keyValueHeads = heads
        return s
    }
}
