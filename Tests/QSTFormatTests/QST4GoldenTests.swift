import Foundation
import XCTest
@testable import QSTFormat

/// The golden files in Formats/golden were written by qst-quantize; their expected values were
/// computed independently (Scripts/make-golden: NumPy NF4 reference, NumPy BF16 rounding).
final class QST4GoldenTests: XCTestCase {
    struct Expected: Decodable { let shape: [Int]; let bits: [UInt32] }

    func expected() throws -> [String: [String: Expected]] {
        let data = try Data(contentsOf: QST4TestSupport.golden.appendingPathComponent("tiny.expected.json"))
        return try JSONDecoder().decode([String: [String: Expected]].self, from: data)
    }

    func testGoldenFilesDecodeToTheIndependentlyComputedValues() throws {
        for (file, tensors) in try expected() {
            let c = try QST4Container(path: QST4TestSupport.golden.appendingPathComponent(file).path)
            XCTAssertEqual(Set(c.tensorNames), Set(tensors.keys), file)
            for (name, exp) in tensors {
                let e = try c.entry(name)
                XCTAssertEqual(e.shape, exp.shape, "\(file) \(name)")
                let got = try c.floats(name).map(\.bitPattern)
                XCTAssertEqual(got, exp.bits, "\(file) \(name): decoded values differ from the reference")
            }
            XCTAssertEqual(c.verify(), [], file)
        }
    }

    func testGoldenFileLayoutFollowsTheSpec() throws {
        let c = try QST4Container(path: QST4TestSupport.golden.appendingPathComponent("tiny.qst4").path)
        let bytes = c.file.bytes
        XCTAssertEqual(Array(bytes[0..<8]), [0x51, 0x53, 0x54, 0x34, 0x0D, 0x0A, 0x1A, 0x0A])
        XCTAssertEqual(c.alignment, 4096)
        XCTAssertEqual(c.dataOffset, 4096)
        XCTAssertEqual(c.header.layers.map(\.index), [0])
        let layer = c.header.layers[0]
        XCTAssertEqual(layer.offset % 4096, 0)
        // Order: files, embeddings, layer 0, final norm.
        let offsets = c.header.tensors.map { $0.parts.values.map(\.offset).min()! }
        XCTAssertEqual(offsets, offsets.sorted())
        XCTAssertEqual(c.header.tensors.first?.name, "model.embed_tokens.weight")
        XCTAssertEqual(c.header.tensors.last?.name, "model.norm.weight")
        for t in c.header.tensors where t.layer == 0 {
            for r in t.parts.values {
                XCTAssert(r.offset >= layer.offset && r.offset + r.length <= layer.offset + layer.length)
            }
        }
        let q = try c.entry("model.layers.0.self_attn.q_proj.weight")
        XCTAssertEqual(q.parts["codes"]?.length, 120)  // 240 elements, two per byte
        XCTAssertEqual(q.parts["absmax_codes"]?.length, 4)  // 3 full blocks + 1 partial
        XCTAssertEqual(q.parts["absmax2"]?.length, 4)
    }

    /// The spec's DYN8 table (hex float32 bits in Formats/QST4.md) is the one the codec uses.
    func testSpecDynamicMapTableMatchesTheImplementation() throws {
        let spec = try String(
            contentsOf: QST4TestSupport.repo.appendingPathComponent("Formats/QST4.md"), encoding: .utf8)
        let start = try XCTUnwrap(spec.range(of: "eight per line"))
        let fence = try XCTUnwrap(spec.range(of: "```\n", range: start.upperBound..<spec.endIndex))
        let end = try XCTUnwrap(spec.range(of: "```", range: fence.upperBound..<spec.endIndex))
        let words = spec[fence.upperBound..<end.lowerBound].split(whereSeparator: { $0 == " " || $0 == "\n" })
        let table = words.compactMap { UInt32($0, radix: 16) }.map { Float(bitPattern: $0) }
        XCTAssertEqual(table.count, 256)
        XCTAssertEqual(table, DynamicMap8.signedCode)
    }

    /// Re-quantizing the committed golden source reproduces the golden bytes: the format is stable.
    func testQuantizingTheGoldenSourceReproducesTheGoldenBytes() throws {
        let dir = try QST4TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        for (name, dq) in [("tiny.qst4", true), ("tiny-nodq.qst4", false)] {
            var policy = QuantizationPolicy()
            policy.nf4.doubleQuant = dq
            let out = dir.appendingPathComponent(name).path
            _ = try QST4Quantize(
                source: QST4TestSupport.golden.appendingPathComponent("source").path, output: out,
                policy: policy, createdBy: "qst-quantize \(QSTVersion.string)",
                createdAt: Date(timeIntervalSince1970: 0)
            ).run()
            let a = try Data(contentsOf: URL(fileURLWithPath: out))
            let b = try Data(contentsOf: QST4TestSupport.golden.appendingPathComponent(name))
            XCTAssertEqual(a, b, "\(name): re-quantizing the golden source gives different bytes")
        }
    }
}
