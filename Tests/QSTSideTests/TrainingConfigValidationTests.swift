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

    func testMessageNamesTheConfiguration() {
        var c = TrainingConfig()
        c.learningRate = -1
        XCTAssertThrowsError(try c.validate()) {
            XCTAssertEqual("\($0)", "training configuration: learning rate must be positive")
        }
    }
}
