import Foundation
import QSTEngine
import QSTNN
import XCTest
@testable import QSTSide

/// The base-state cache (BaseStateCache) stores each example's frozen states as computed inside one
/// micro-batch and serves them inside others, so the engine's training forward must give every real row
/// the same bits whatever the other sequences of the batch and however much padding follows it.
final class FrozenRowIndependenceTests: XCTestCase {
    private func sequences() -> [[Int32]] {
        var rng = SplitMix64(seed: 11)
        // Lengths chosen to cross the GEMV/GEMM row threshold (4) and the attention's 64-row blocks.
        return [1, 3, 7, 20, 70, 5, 66].map { len in (0..<len).map { _ in Int32(3 + rng.next() % 290) } }
    }

    /// NF4 linears (the kernels' GEMM vs GEMV loops).
    func testNF4RowsDoNotDependOnBatchOrPadding() throws {
        try check(try FrozenModel(path: try ExportFixtures.tinyContainer()))
    }

    /// F32 linears (OpenBLAS unless the engine routes them through the kernels).
    func testF32RowsDoNotDependOnBatchOrPadding() throws {
        try check(try FrozenModel(path: try ExportFixtures.tinyLlama()))
    }

    /// Every hidden state and norm(h_N) of each sequence, alone (no padding) and batched with the others.
    private func check(_ model: FrozenModel) throws {
        let seqs = sequences()
        func states(_ batch: [[Int32]]) throws -> (layers: [[Float]], final: [Float], seqLen: Int) {
            let tb = TokenBatch(sequences: batch)
            var layers: [[Float]] = []
            let n = tb.ids.count * model.hiddenSize
            let final = try model.forwardHiddenStates(tb) { _, h in
                layers.append(Array(UnsafeBufferPointer(start: h, count: n)))
            }
            return (layers, final, tb.seqLen)
        }
        let batched = try states(seqs)
        let reordered = try states([seqs[4], seqs[0], seqs[6]])
        let d = model.hiddenSize
        for (s, seq) in seqs.enumerated() {
            let alone = try states([seq])
            func rows(_ x: [Float], seqLen: Int, slot: Int) -> ArraySlice<Float> {
                x[(slot * seqLen * d)..<((slot * seqLen + seq.count) * d)]
            }
            for v in 0..<alone.layers.count {
                XCTAssertEqual(
                    rows(alone.layers[v], seqLen: alone.seqLen, slot: 0),
                    rows(batched.layers[v], seqLen: batched.seqLen, slot: s),
                    "sequence \(s) (length \(seq.count)), hidden state \(v): alone vs batched")
            }
            XCTAssertEqual(
                rows(alone.final, seqLen: alone.seqLen, slot: 0), rows(batched.final, seqLen: batched.seqLen, slot: s),
                "sequence \(s): norm(h_N) alone vs batched")
            if let slot = [4, 0, 6].firstIndex(of: s) {
                XCTAssertEqual(
                    rows(alone.final, seqLen: alone.seqLen, slot: 0),
                    rows(reordered.final, seqLen: reordered.seqLen, slot: slot), "sequence \(s): reordered batch")
            }
        }
    }
}
