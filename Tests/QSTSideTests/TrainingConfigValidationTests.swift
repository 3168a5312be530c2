import QSTFormat
import QSTSide
import XCTest

/// Out-of-range training hyperparameters are refused with one line and the `invalidConfiguration` kind.
final class TrainingConfigValidationTests: XCTestCase {
    private func kind(_ change: (inout TrainingConfig) -> Void) -> QSTError.Kind? {
        var c = TrainingConfig()
        change(&c)
        do { try c.validate(); return nil } catch { return (error as? QSTError)?.kind }
    }

    func testOutOfRangeValuesHaveTheirKind() {
        XCTAssertNil(kind { _ in })
        XCTAssertEqual(kind { $0.learningRate = 0 }, .invalidConfiguration)
        XCTAssertEqual(kind { $0.learningRate = .nan }, .invalidConfiguration)
        XCTAssertEqual(kind { $0.batchSize = 0 }, .invalidConfiguration)
        XCTAssertEqual(kind { $0.maxLength = 1 }, .invalidConfiguration)
        XCTAssertEqual(kind { $0.warmupRatio = 1 }, .invalidConfiguration)
        XCTAssertEqual(kind { $0.beta2 = 1 }, .invalidConfiguration)
        XCTAssertEqual(kind { $0.blockLearningRateScale = -0.5 }, .invalidConfiguration)
        XCTAssertEqual(kind { $0.blockLearningRateScale = .infinity }, .invalidConfiguration)
        XCTAssertNil(kind { $0.blockLearningRateScale = 0 })
        XCTAssertEqual(kind { $0.gateLearningRateScale = -1 }, .invalidConfiguration)
        XCTAssertEqual(kind { $0.gateLearningRateScale = .nan }, .invalidConfiguration)
        XCTAssertNil(kind { $0.gateLearningRateScale = 100 })
    }

    /// `--block-lr-scale` and `--gate-lr-scale` reach the blocks and gates of both families' layouts (the OPT side
    /// network names them `model.decoder.qst_layers.*` and `model.decoder.z.*`), and nothing else.
    func testLearningRateGroupsCoverBothFamilies() throws {
        for shape in [SideFixtures.tinyShape, OPTSideFixtures.shape(pre: true)] {
            let weights = try SideWeights(config: SideConfig(base: shape, r: 2))
            var c = TrainingConfig()
            c.blockLearningRateScale = 0.25
            c.gateLearningRateScale = 4
            let parameters = weights.parameters
            let scales = c.learningRateScales(parameters)
            var counts: [Float: Int] = [:]
            for (p, scale) in zip(parameters, scales) {
                let parts = p.name.split(separator: ".")
                let expected: Float =
                    parts.contains("qst_layers") ? 0.25 : (parts.count >= 2 && parts[parts.count - 2] == "z" ? 4 : 1)
                XCTAssertEqual(scale, expected, "\(shape.modelFamily ?? "llama"): \(p.name)")
                counts[scale, default: 0] += 1
            }
            XCTAssertGreaterThanOrEqual(counts[0.25] ?? 0, shape.layerCount, "every block is in the block group")
            XCTAssertEqual(counts[4], shape.layerCount, "one gate per layer")
            XCTAssertGreaterThan(counts[1] ?? 0, 0, "downsamplers, upsample and head keep the rate")
        }
    }

    func testMessageNamesTheConfiguration() {
        var c = TrainingConfig()
        c.learningRate = -1
        XCTAssertThrowsError(try c.validate()) {
            XCTAssertEqual("\($0)", "training configuration: learning rate must be positive")
        }
    }
}
