import Foundation
import QSTEngine
import QSTFormat
import QSTNN
import XCTest
@testable import QSTSide
import QSTTestSupport

/// Continuous batching's step (`TunedModel.raggedStep`): requests that join at different steps, prefill in
/// chunks and decode one token at a time, each with its own side network (or none), in one ragged base
/// forward per step — against each request run alone through the rectangular `TunedModel.forward` /
/// `FrozenModel.forward` over its whole sequence.
final class RaggedTunedStepTests: XCTestCase {
    func testRaggedStepsMatchEachRequestAlone() throws {
        let base = try FrozenModel(
            path: try ExportFixtures.tinyContainer(), options: EngineOptions(matmulPath: .dequantizeSGEMM))
        let sideA = try ExportFixtures.sideWeights(for: base, seed: 5)
        let sideB = try ExportFixtures.sideWeights(for: base, kind: .linear, seed: 9)
        struct Req { let ids: [Int32]; let side: SideWeights?; let joins: Int; let chunk: Int }
        let reqs = [
            Req(ids: [1, 17, 42, 99, 5, 250, 7, 3, 64, 12, 9], side: sideA, joins: 0, chunk: 4),
            Req(ids: [1, 200, 13, 8, 111, 6, 77], side: sideB, joins: 1, chunk: 3),
            Req(ids: [1, 5, 60, 61, 62, 2, 30, 31], side: nil, joins: 2, chunk: 8),
            Req(ids: [1, 44, 45, 46, 47, 48], side: sideA, joins: 2, chunk: 2),
        ]
        let e = base.headInputSize
        // Reference: each request alone, all positions in one forward.
        let reference: [[Float]] = try reqs.map { r in
            if let s = r.side {
                return try TunedModel(base: base, sides: [s]).forward(ids: r.ids, batch: 1, newTokens: r.ids.count)
                    .heads[0].array
            }
            return try base.forward(ids: r.ids, batch: 1, newTokens: r.ids.count).array
        }
        let caches = reqs.map { base.makeCache(batch: 1, capacity: $0.ids.count) }
        let sessions = reqs.map { r in
            r.side.map { SideSession(weights: $0, precision: .float32, capacity: r.ids.count) }
        }
        var done = [Int](repeating: 0, count: reqs.count)
        var step = 0, checked = 0
        while zip(done, reqs).contains(where: { $0 < $1.ids.count }) {
            var segments: [TunedSegment] = [], owners: [Int] = []
            for (j, r) in reqs.enumerated() where r.joins <= step && done[j] < r.ids.count {
                let n = min(r.chunk, r.ids.count - done[j])
                segments.append(
                    TunedSegment(ids: Array(r.ids[done[j]..<(done[j] + n)]), cache: caches[j], side: sessions[j]))
                owners.append(j)
                done[j] += n
            }
            let heads = try TunedModel.raggedStep(base: base, segments: segments)
            for (k, j) in owners.enumerated() {
                let got = Array(UnsafeBufferPointer(start: heads.constPointer + k * e, count: e)).map(Double.init)
                let want = reference[j][((done[j] - 1) * e)..<(done[j] * e)].map(Double.init)
                let err = relativeFrobenius(got, want)
                XCTAssertLessThan(err, 1e-5, "request \(j) at position \(done[j] - 1), step \(step)")
                checked += 1
            }
            step += 1
        }
        XCTAssertEqual(checked, 10, "every step of every request compared")
        // The side networks matter: request 0's last head input differs from the plain base's.
        let plain = try base.forward(ids: reqs[0].ids, batch: 1, newTokens: reqs[0].ids.count).array
        let n = reqs[0].ids.count
        XCTAssertGreaterThan(
            relativeFrobenius(
                plain[((n - 1) * e)...].map(Double.init),
                reference[0][((n - 1) * e)...].map(Double.init)), 1e-3)
    }

    func testRejectedStepLeavesCachesUntouched() throws {
        let base = try FrozenModel(
            path: try ExportFixtures.tinyContainer(), options: EngineOptions(matmulPath: .dequantizeSGEMM))
        let side = SideSession(weights: try ExportFixtures.sideWeights(for: base), precision: .float32, capacity: 4)
        let ok = base.makeCache(batch: 1, capacity: 4), full = base.makeCache(batch: 1, capacity: 2)
        XCTAssertThrowsError(
            try TunedModel.raggedStep(
                base: base,
                segments: [
                    TunedSegment(ids: [1, 2], cache: ok, side: side),
                    TunedSegment(ids: [1, 2, 3], cache: full, side: nil),
                ]))
        XCTAssertEqual(ok.length, 0)
        XCTAssertEqual(side.cache.length, 0)
        XCTAssertEqual(full.length, 0)
    }

    /// The server's batched decode step under the kernels (`--matmul auto`): 9 requests on 5 side networks
    /// (and the plain base) decoding together — one call per linear over all their rows, side sessions in
    /// parallel, one head call — give each request the bits it gets stepping alone, as `qst-generate` does.
    func testDecodeRowsTogetherEqualEachAloneBitwise() throws {
        let base = try FrozenModel(
            path: try ExportFixtures.tinyContainer(), options: EngineOptions(matmulPath: .kernelsAuto))
        let sides = try (0..<5).map { try ExportFixtures.sideWeights(for: base, seed: UInt64(11 + $0)) }
        var prompts: [[Int32]] = []
        for j in 0..<9 {
            var p: [Int32] = [1]
            for t in 0..<(2 + j % 4) { p.append(Int32(7 + 13 * j + 5 * t)) }
            prompts.append(p)
        }
        let sideOf: [SideWeights?] = (0..<9).map { $0 == 4 ? nil : sides[$0 % 5] }
        let decode: [[Int32]] = [
            [3, 30, 299, 31, 32, 33, 34, 35, 36], [4, 40, 41, 42, 43, 44, 45, 46, 47],
            [9, 90, 91, 92, 93, 94, 95, 96, 97],
        ]
        let e = base.headInputSize, V = base.vocabSize
        func start() throws -> [TunedSegment] {
            try prompts.indices.map { j in
                let seg = TunedSegment(
                    ids: prompts[j], cache: base.makeCache(batch: 1, capacity: 12),
                    side: sideOf[j].map { SideSession(weights: $0, precision: .bfloat16, capacity: 12) })
                _ = try TunedModel.raggedStep(base: base, segments: [seg])
                return seg
            }
        }
        let together = try start(), alone = try start()
        for (t, ids) in decode.enumerated() {
            let segs = together.indices.map { j in
                TunedSegment(ids: [ids[j]], cache: together[j].cache, side: together[j].side)
            }
            let heads = try TunedModel.raggedStep(base: base, segments: segs)
            let logits = base.raggedLogits(hidden: heads.constPointer, rows: segs.count)
            for j in alone.indices {
                let one = try TunedModel.raggedStep(
                    base: base,
                    segments: [
                        TunedSegment(ids: [ids[j]], cache: alone[j].cache, side: alone[j].side)
                    ])
                let oneLogits = base.raggedLogits(hidden: one.constPointer, rows: 1)
                XCTAssertTrue(
                    memcmp(heads.constPointer + j * e, one.constPointer, e * 4) == 0,
                    "request \(j) step \(t): head input differs from the request alone")
                XCTAssertTrue(
                    memcmp(logits.constPointer + j * V, oneLogits.constPointer, V * 4) == 0,
                    "request \(j) step \(t): logits differ from the request alone")
            }
        }
    }
}
