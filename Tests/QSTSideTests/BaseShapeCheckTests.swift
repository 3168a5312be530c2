import Foundation
import QSTEngine
import QSTFormat
import XCTest
@testable import QSTSide

/// A side network built for another model is refused alike by training (`SideModel`) and inference
/// (`TunedModel`): one line naming the side network, the dimension, both values and the base model's file.
final class BaseShapeCheckTests: XCTestCase {
    func testEveryDimensionMismatchIsRefusedByBothPaths() throws {
        let path = try ExportFixtures.tinyContainer()
        let base = try FrozenModel(path: path, options: EngineOptions())
        let shape = try BaseShape.parse(configJSON: try base.source.configJSON(), context: "test")
        // The side network as built for the base itself runs on both paths.
        let fits = try SideWeights(config: SideConfig(base: shape, r: 2))
        XCTAssertNoThrow(try SideModel(weights: fits, backbone: base))
        XCTAssertNoThrow(try TunedModel(base: base, sides: [fits]))

        var cases: [(String, BaseShape)] = []
        func variant(_ what: String, _ change: (inout BaseShape) -> Void) {
            var s = shape
            change(&s)
            cases.append((what, s))
        }
        variant("hidden size") { $0.hiddenSize *= 2 }
        variant("layer count") { $0.layerCount += 1 }
        variant("vocabulary size") { $0.vocabSize += 8 }
        variant("attention heads") {
            $0.attentionHeads *= 2; $0.keyValueHeads *= 2
        }
        variant("key/value heads") { $0.keyValueHeads = $0.keyValueHeads == 1 ? $0.attentionHeads : 1 }
        variant("head input size") { $0.headInputSize = shape.hiddenSize / 2 }
        for (what, other) in cases {
            let side = try SideWeights(config: SideConfig(base: other, r: 2))
            for (label, make) in [
                ("SideModel", { _ = try SideModel(weights: side, backbone: base) }),
                ("TunedModel", { _ = try TunedModel(base: base, sides: [fits, side]) }),
            ] as [(String, () throws -> Void)] {
                XCTAssertThrowsError(try make(), "\(label) accepted a side network built for another \(what)") { e in
                    let m = "\(e)"
                    XCTAssertTrue(m.contains("was built for \(what)"), "\(label): \(m)")
                    XCTAssertTrue(m.contains(path), "\(label) does not name the base model's file: \(m)")
                    XCTAssertFalse(m.contains("\n"), "\(label): not one line: \(m)")
                    if label == "TunedModel" { XCTAssertTrue(m.contains("side network 2"), m) }
                }
            }
        }
    }
}
