import Foundation
import XCTest
@testable import QSTFormat

/// Quantize a small folder and read it back: every tensor decodes to what the policy promises.
final class QST4RoundTripTests: XCTestCase {
    var dir: URL!
    var folder: URL!
    override func setUpWithError() throws {
        dir = try QST4TestSupport.temporaryDirectory()
        folder = try QST4TestSupport.tinyModelFolder(in: dir)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func quantize(_ policy: QuantizationPolicy = QuantizationPolicy(), name: String = "m.qst4") throws -> (
        QST4Container, QuantizationSummary
    ) {
        let out = dir.appendingPathComponent(name).path
        let summary = try QST4Quantize(source: folder.path, output: out, policy: policy, createdBy: "test").run()
        return (try QST4Container(path: out), summary)
    }

    func testDefaultPolicyQuantizesLayerMatricesAndKeepsTheRest() throws {
        let (c, summary) = try quantize()
        let src = try SafetensorsCheckpoint(path: folder.path)
        XCTAssertEqual(summary.tensors, 6)
        XCTAssertEqual(summary.quantizedTensors, 3)
        for e in c.header.tensors {
            let original = try src.floats(e.name)
            let decoded = try c.floats(e.name)
            switch e.name {
            case "model.embed_tokens.weight":
                XCTAssertEqual(e.dtype, .bf16)
                XCTAssertEqual(decoded, original.map { FloatConversion.bf16ToF32(FloatConversion.f32ToBF16($0)) })
            case let n where n.hasSuffix("norm.weight"):
                XCTAssertEqual(e.dtype, .f32)
                XCTAssertEqual(decoded, original)
            default:
                XCTAssertEqual(e.dtype, .nf4, e.name)
                XCTAssertEqual(e.blockSize, 64)
                XCTAssertEqual(e.doubleQuant, true)
                let t = try original.withUnsafeBufferPointer {
                    try NF4.quantize($0, parameters: NF4Parameters(), file: "", tensor: e.name)
                }
                XCTAssertEqual(decoded, NF4.dequantize(t), e.name)
            }
        }
        XCTAssertEqual(c.header.layers.map(\.index), [0, 1])
        XCTAssertEqual(
            String(decoding: try c.configJSON(), as: UTF8.self),
            String(decoding: try Data(contentsOf: folder.appendingPathComponent("config.json")), as: UTF8.self))
        XCTAssertEqual(c.header.provenance.sources.map(\.path), ["model.safetensors", "config.json"])
        let sha = try Checksums.sha256Hex(file: folder.appendingPathComponent("model.safetensors").path)
        XCTAssertEqual(c.header.provenance.sources[0].sha256, sha)
        XCTAssertEqual(c.verify(), [])
    }

    func testKeepAllAsF32IsExact() throws {
        var p = QuantizationPolicy()
        p.keepPatterns = [".*"]
        p.keptDtype = .f32
        let (c, _) = try quantize(p)
        let src = try SafetensorsCheckpoint(path: folder.path)
        for name in src.names {
            XCTAssertEqual(try c.entry(name).dtype, .f32)
            XCTAssertEqual(try c.floats(name), try src.floats(name))
        }
    }

    func testOptionsReachTheFile() throws {
        var p = QuantizationPolicy()
        p.nf4.blockSize = 128
        p.nf4.doubleQuant = false
        p.quantizeEmbeddings = true
        p.keepPatterns = ["mlp"]
        p.keptDtype = .f16
        let (c, _) = try quantize(p)
        XCTAssertEqual(try c.entry("model.embed_tokens.weight").dtype, .nf4)
        XCTAssertEqual(try c.entry("model.layers.0.mlp.up_proj.weight").dtype, .f16)
        let q = try c.entry("model.layers.0.self_attn.q_proj.weight")
        XCTAssertEqual(q.blockSize, 128)
        XCTAssertEqual(q.doubleQuant, false)
        XCTAssertNotNil(q.parts["absmax"])
        XCTAssertEqual(c.header.quantization?.blockSize, 128)
    }

    func testBadOptionsAndInputsAreRefusedWithoutLeavingAFile() throws {
        var p = QuantizationPolicy()
        p.nf4.blockSize = 48
        XCTAssertThrowsError(try quantize(p, name: "bad1.qst4"))
        p = QuantizationPolicy()
        p.keepPatterns = ["("]
        XCTAssertThrowsError(try quantize(p, name: "bad2.qst4")) { XCTAssertTrue("\($0)".contains("--keep")) }
        // A NaN weight: the error names the tensor; no partial output remains.
        let bad = dir.appendingPathComponent("nan")
        try FileManager.default.createDirectory(at: bad, withIntermediateDirectories: true)
        try SafetensorsWriter.write(
            to: bad.appendingPathComponent("model.safetensors").path,
            tensors: [
                try .init(
                    name: "model.layers.0.mlp.up_proj.weight", shape: [2, 64],
                    floats: (0..<128).map { $0 == 77 ? .nan : Float($0) })
            ])
        try Data("{}".utf8).write(to: bad.appendingPathComponent("config.json"))
        let out = dir.appendingPathComponent("nan.qst4").path
        XCTAssertThrowsError(
            try QST4Quantize(source: bad.path, output: out, policy: QuantizationPolicy(), createdBy: "t").run()
        ) {
            XCTAssertTrue("\($0)".contains("model.layers.0.mlp.up_proj.weight"), "\($0)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.contains(".tmp") }
        XCTAssertEqual(leftovers, [])
    }

    func testTensorOrderIsEmbeddingsLayersThenHead() {
        let names = [
            "lm_head.weight", "model.layers.10.a.weight", "model.norm.weight", "model.layers.2.b.weight",
            "model.embed_tokens.weight", "model.layers.2.a.weight",
        ]
        XCTAssertEqual(
            ModelTensorOrder.sorted(names),
            [
                "model.embed_tokens.weight", "model.layers.2.b.weight",
                "model.layers.2.a.weight", "model.layers.10.a.weight",
                "lm_head.weight", "model.norm.weight",
            ])
        XCTAssertEqual(ModelTensorOrder.layerIndex(of: "model.layers.17.mlp.up_proj.weight"), 17)
        XCTAssertNil(ModelTensorOrder.layerIndex(of: "model.embed_tokens.weight"))
    }

    func testBlockStatisticsAndErrorsReport() throws {
        let (c, _) = try quantize()
        let b = try ContainerInspection.blocks(c, tensor: "model.layers.0.mlp.up_proj.weight")
        XCTAssertEqual(b.blocks, 10)
        XCTAssertEqual(b.codeHistogram.reduce(0, +), 640)
        XCTAssertLessThanOrEqual(b.absmaxMin, b.absmaxMedian)
        XCTAssertLessThanOrEqual(b.absmaxP99, b.absmaxMax)
        XCTAssertThrowsError(try ContainerInspection.blocks(c, tensor: "model.norm.weight"))
        let errs = try ContainerInspection.errors(c, source: try SafetensorsCheckpoint(path: folder.path))
        XCTAssertEqual(errs.count, 6)
        XCTAssertEqual(errs.map(\.statistics.sqnrDB), errs.map(\.statistics.sqnrDB).sorted())
        // Independent SQNR of one NF4 tensor, in Double.
        let name = "model.layers.0.mlp.up_proj.weight"
        let o = try SafetensorsCheckpoint(path: folder.path).floats(name), d = try c.floats(name)
        let sig = o.reduce(0.0) { $0 + Double($1) * Double($1) }
        let err = zip(o, d).reduce(0.0) { $0 + (Double($1.0) - Double($1.1)) * (Double($1.0) - Double($1.1)) }
        let s = try XCTUnwrap(errs.first { $0.name == name }).statistics
        XCTAssertEqual(s.sqnrDB, 10 * log10(sig / err), accuracy: 1e-6)
        XCTAssertEqual(s.mse, err / 640, accuracy: 1e-6 * err / 640)
    }
}
