import XCTest
@testable import QSTNN

/// Per-example dropout streams (data-parallel training): an example's mask is a function of its key and
/// the call alone, checked against a direct sequential evaluation of the documented formula.
final class DropoutStreamsTests: XCTestCase {
    private func masks(keys: [UInt64], seqLen: Int, width: Int, p: Float, call: Int) -> [UInt8] {
        let n = keys.count * seqLen * width
        let x = [Float](repeating: 1, count: n)
        var out = [Float](repeating: 0, count: n), mask = [UInt8](repeating: 9, count: n)
        x.withUnsafeBufferPointer { xp in
            out.withUnsafeMutableBufferPointer { op in
                mask.withUnsafeMutableBufferPointer { mp in
                    Dropout.forward(
                        out: op.baseAddress!, mask: mp.baseAddress!, x: xp.baseAddress!, width: width, p: p,
                        streams: DropoutStreams(keys: keys, seqLen: seqLen, call: call))
                }
            }
        }
        for i in 0..<n { XCTAssertEqual(out[i], mask[i] == 1 ? 1 / (1 - p) : 0) }
        return mask
    }

    func testMaskDependsOnTheExampleNotItsRowOrPadding() {
        let width = 7, p: Float = 0.4
        // Example B alone (3 rows) versus second of two with 5 rows of padding room.
        let alone = masks(keys: [22], seqLen: 3, width: width, p: p, call: 2)
        let paired = masks(keys: [11, 22], seqLen: 5, width: width, p: p, call: 2)
        XCTAssertEqual(Array(paired[(5 * width)..<(5 * width + 3 * width)]), alone)
        // The formula, evaluated sequentially: output t·width + j + 1 of SplitMix64(mix(key ^ mix(call + 1))).
        var rng = SplitMix64(seed: SplitMix64.mix(22 ^ SplitMix64.mix(3)))
        let expected = (0..<(3 * width)).map { _ in SplitMix64.unitFloat(rng.next()) >= p ? UInt8(1) : 0 }
        XCTAssertEqual(alone, expected)
        // Another call or another key draws another mask; the dropped fraction is about p.
        XCTAssertNotEqual(masks(keys: [22], seqLen: 3, width: width, p: p, call: 3), alone)
        XCTAssertNotEqual(masks(keys: [23], seqLen: 3, width: width, p: p, call: 2), alone)
        let big = masks(keys: [1, 2, 3, 4], seqLen: 50, width: 100, p: p, call: 0)
        let dropped = Double(big.filter { $0 == 0 }.count) / Double(big.count)
        XCTAssertEqual(dropped, Double(p), accuracy: 0.02)
    }

    /// Large enough to be split over threads, with examples of a size that no split lands on: every element
    /// against the formula, so an offset lost where a thread's range starts inside an example shows.
    func testEveryElementOfAThreadSplitBatchFollowsTheFormula() {
        let keys: [UInt64] = [5, 6, 7], seqLen = 7, width = 1_001, p: Float = 0.3, call = 4
        let got = masks(keys: keys, seqLen: seqLen, width: width, p: p, call: call)
        var expected: [UInt8] = []
        for key in keys {
            var rng = SplitMix64(seed: SplitMix64.mix(key ^ SplitMix64.mix(UInt64(call) + 1)))
            expected += (0..<(seqLen * width)).map { _ in SplitMix64.unitFloat(rng.next()) >= p ? UInt8(1) : 0 }
        }
        XCTAssertEqual(got.count, expected.count)
        XCTAssertEqual(got.indices.first { got[$0] != expected[$0] }, nil)
    }
}
