import Foundation
import QSTNN
import XCTest
@testable import QSTSide

/// The side block workspace's byte count (what SideMemory reports) is what the workspace allocates: counted
/// here by walking the allocated buffers (Mirror), not through the plan both read.
final class SideWorkspacePlanTests: XCTestCase {
    private func allocatedFloats(_ ws: SideBlockWorkspace) -> Int {
        Mirror(reflecting: ws).children.reduce(0) { $0 + (($1.value as? FloatBuffer)?.count ?? 0) }
    }

    func testByteCountIsTheAllocation() {
        let configs = [
            SideConfig(base: SideFixtures.tinyShape, r: 2),
            SideConfig(base: OPTSideFixtures.shape(pre: true), r: 2),
            SideConfig(base: OPTSideFixtures.shape(pre: false, hidden: 32), r: 4),
        ]
        for c in configs {
            for (lengths, T) in [([4, 2], 4), ([3], 7), ([5, 5, 1], 5)] {
                let g = SideBatchGeometry(
                    config: c, lengths: lengths, seqLen: T,
                    invFreq: RoPE.inverseFrequencies(headDim: c.headDim, theta: 10000))
                let ws = SideBlockWorkspace(config: c, geometry: g)
                let bytes = SideBlockWorkspace.bytes(config: c, batch: lengths.count, seqLen: T)
                XCTAssertEqual(bytes, 4 * allocatedFloats(ws), "\(c.base.isOPT ? "OPT" : "LLaMA") \(lengths) T \(T)")
                // The figure the estimate gave before the plan existed (6·n·w + 3·n·qw + …, equal since qw = w).
                let n = lengths.count * T, w = c.width, qw = c.heads * c.headDim, kw = c.kvHeads * c.headDim
                let before =
                    n * (4 * w + 3 * qw + 4 * kw + 6 * c.intermediate + 2 * w + 4) + (c.base.isOPT ? n * w : 0)
                    + lengths.count * c.heads * T * T
                XCTAssertEqual(bytes, 4 * before)
            }
        }
    }
}
