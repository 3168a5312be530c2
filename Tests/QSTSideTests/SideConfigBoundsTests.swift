import Foundation
import XCTest
import QSTFormat
@testable import QSTSide

/// A side network's configuration comes from files anyone can hand over (side_config.json,
/// adapter_config.json, a merged container's header): sizes are bounded before any arithmetic, and a
/// folder's weights are checked against the layout before the layout is allocated (regressions from
/// hardening the readers for Fuzz/fuzz-side).
final class SideConfigBoundsTests: XCTestCase {
    func shape(hidden: Int = 64, layers: Int = 2, heads: Int = 4, kv: Int = 2) -> BaseShape {
        BaseShape(
            hiddenSize: hidden, layerCount: layers, attentionHeads: heads, keyValueHeads: kv, intermediateSize: 128,
            vocabSize: 300,
            rmsNormEps: 1e-5)
    }

    func message(_ c: SideConfig) -> String {
        do { try c.validate(); return "valid" } catch { return "\(error)" }
    }

    func testOutOfRangeSizesAreRefusedByName() {
        XCTAssertEqual(message(SideConfig(base: shape(), r: 2)), "valid")
        XCTAssertEqual(
            message(SideConfig(base: shape(hidden: 1 << 40), r: 2)),
            "side network: hidden_size \(1 << 40) is outside 1...\(1 << 20)")
        // Zero heads used to divide by zero inside validate itself.
        XCTAssertEqual(
            message(SideConfig(base: shape(heads: 0), r: 2)), "side network: num_attention_heads 0 is outside 1...4096")
        XCTAssertEqual(
            message(SideConfig(base: shape(kv: 0), r: 2)), "side network: num_key_value_heads 0 is outside 1...4096")
        XCTAssertEqual(
            message(SideConfig(base: shape(kv: 3), r: 2)),
            "side network: num_key_value_heads 3 does not divide num_attention_heads 4")
        XCTAssertEqual(message(SideConfig(base: shape(), r: 0)), "side network: r 0 is outside 1...\(1 << 20)")
        XCTAssertEqual(
            message(SideConfig(base: shape(), r: 2, adapterHidden: Int.max)),
            "side network: adapter_hidden \(Int.max) is above \(1 << 20)")
        var pooledWithoutHead = SideConfig(base: shape(), r: 2)
        pooledWithoutHead.headPooling = .mean
        XCTAssertEqual(message(pooledWithoutHead), "side network: headPooling needs a classification head (numLabels)")
        pooledWithoutHead.numLabels = 2
        XCTAssertEqual(message(pooledWithoutHead), "valid")
    }

    /// A config asking for ~2^52 floats beside a small weights file: refused from the file's tensor list,
    /// without trying to allocate the layout (which would abort the process).
    func testHugeLayoutIsCheckedAgainstTheFileFirst() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("qst-bounds-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let small = SideConfig(base: shape(), r: 2, downsample: .linear)
        let weights = try SideWeights(config: small)
        try SideWeightsIO.save(weights, directory: dir)
        var huge = small
        huge.base = BaseShape(
            hiddenSize: 1 << 20, layerCount: 4096, attentionHeads: 4, keyValueHeads: 2,
            intermediateSize: 1 << 22, vocabSize: 300, rmsNormEps: 1e-5)
        huge.r = 1
        try huge.jsonData().write(to: URL(fileURLWithPath: dir + "/side_config.json"))
        XCTAssertThrowsError(try SideWeightsIO.load(directory: dir)) { e in
            XCTAssertTrue("\(e)".hasPrefix(dir + "/side.safetensors: tensor '"), "\(e)")
        }
    }
}
