import Foundation
import QSTCore
import QSTNN
import XCTest
import QSTTestSupport
@testable import QSTSide

/// The layer gates' start (SideGateInit, Formats/RUNS.md §1.3): what each start makes of the side stream, through
/// the gated mix the training forward runs.
final class GateInitTests: XCTestCase {
    private func weights(_ start: SideGateInit, layers: Int = 30) throws -> SideWeights {
        let shape = BaseShape(
            hiddenSize: 64, layerCount: layers, attentionHeads: 4, keyValueHeads: 2, intermediateSize: 128,
            vocabSize: 100, rmsNormEps: 1e-5, ropeTheta: 10_000, hiddenAct: "silu")
        let w = try SideWeights(
            config: SideConfig(base: shape, r: 4, downsample: .adapter, seed: 0, headMix: .residual))
        w.initialize(seed: 0)
        start.apply(to: w)
        return w
    }

    /// With running-mean gates the stream entering block i is the mean of the i + 2 states read so far (the blocks
    /// left out); with the reference's, the first state's share after L layers is 0.62^L.
    func testRunningMeanGatesAverageEveryState() throws {
        let L = 30, width = 16, rows = 3
        var rng = SplitMix64(seed: 5)
        let states = (0...L).map { _ in (0..<(rows * width)).map { _ in 2 * rng.nextFloat() - 1 } }
        for start in SideGateInit.allCases {
            let w = try weights(start, layers: L)
            XCTAssertEqual(w.config.width, width)
            var stream = states[0]
            var firstShare: Float = 1
            for i in 0..<L {
                let z = w.value(w.config.gateName(i))
                XCTAssertTrue((0..<width).allSatisfy { z[$0] == start.logit(layer: i) }, "\(start) gate \(i)")
                var out = [Float](repeating: .nan, count: rows * width)
                GatedMix.forward(out: &out, a: states[i + 1], b: stream, z: z, n: rows, d: width)
                stream = out
                firstShare *= 1 / (1 + Foundation.exp(-z[0]))
                if start == .runningMean {
                    let mean = (0..<(rows * width)).map { j in
                        states[0...(i + 1)].reduce(0) { $0 + $1[j] } / Float(i + 2)
                    }
                    XCTAssertLessThan(relativeFrobenius(stream, mean), 1e-5, "layer \(i): not the running mean")
                }
            }
            switch start {
            case .runningMean: XCTAssertEqual(firstShare, 1 / Float(L + 1), accuracy: 1e-6)
            case .reference: XCTAssertEqual(firstShare, Float(pow(1 / (1 + exp(-0.5)), Double(L))), accuracy: 1e-7)
            }
        }
    }

    /// Gates draw no random numbers: every other tensor is the same for both starts of one seed.
    func testGateStartChangesOnlyTheGates() throws {
        let a = try weights(.reference), b = try weights(.runningMean)
        for s in a.specs {
            let same = (0..<s.count).allSatisfy { a.value(s.name)[$0] == b.value(s.name)[$0] }
            XCTAssertEqual(same, !s.name.hasPrefix("model.z."), s.name)
        }
        XCTAssertEqual(b.value("model.z.0")[0], 0)
        XCTAssertEqual(b.value("model.z.29")[0], Float(log(30.0)))
    }
}
