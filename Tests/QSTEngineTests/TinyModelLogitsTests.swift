import XCTest
import QSTFormat
@testable import QSTEngine
import QSTTestSupport

/// Engine logits against the NumPy float64 reference on the tiny synthetic HF folders.
final class TinyModelLogitsTests: XCTestCase {
    /// Two sequences of different lengths: exercises right padding and the key mask too.
    static let sequences: [[Int32]] = [
        [1, 17, 42, 255, 7, 99, 3, 128, 64, 5, 200, 11],
        [1, 250, 33, 8, 190, 77, 2],
    ]

    func engineLogits(_ model: FrozenModel, _ seqs: [[Int32]]) throws -> (logits: [Float], batch: TokenBatch) {
        let batch = TokenBatch(sequences: seqs)
        return (try model.logits(batch).array, batch)
    }

    func checkAgainstReference(
        _ name: String, path: MatmulPath = .dequantizeSGEMM, tolerance: Double = 1e-4,
        file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let folder = try Reference.tiny(name)
        let ref = try Reference.logits(model: folder, sequences: Self.sequences)
        let model = try FrozenModel(path: folder, options: EngineOptions(matmulPath: path))
        let (logits, batch) = try engineLogits(model, Self.sequences)
        let err = relativeFrobenius(
            validRows(logits, lengths: batch.lengths, seqLen: batch.seqLen, vocab: model.vocabSize),
            validRows(ref, lengths: batch.lengths))
        XCTAssertLessThanOrEqual(
            err, tolerance, "\(name) via \(path): relative Frobenius error", file: file, line: line)
        XCTAssertGreaterThan(
            validRows(ref, lengths: batch.lengths).map(abs).max() ?? 0, 0.1, "reference logits are not trivial")
    }

    /// Sequences longer than the engine's 64-query attention blocks, one padded, against the reference.
    func testLongSequencesAcrossAttentionBlocks() throws {
        let folder = try Reference.tiny("tiny-llama3")
        var s: UInt64 = 3
        let seqs: [[Int32]] = [150, 97].map { n in
            (0..<n).map { _ in
                s = s &* 6364136223846793005 &+ 1442695040888963407; return Int32((s >> 33) % 300)
            }
        }
        let ref = try Reference.logits(model: folder, sequences: seqs)
        for path in [MatmulPath.dequantizeSGEMM, .kernelsExact] {
            let model = try FrozenModel(path: folder, options: EngineOptions(matmulPath: path))
            let (logits, batch) = try engineLogits(model, seqs)
            let err = relativeFrobenius(
                validRows(logits, lengths: batch.lengths, seqLen: batch.seqLen, vocab: model.vocabSize),
                validRows(ref, lengths: batch.lengths))
            XCTAssertLessThanOrEqual(err, 1e-4, "\(path)")
        }
    }

    func testTinyLlama() throws { try checkAgainstReference("tiny-llama") }
    func testTinyQwen2WithBiases() throws { try checkAgainstReference("tiny-qwen2") }
    func testTinyLlama3RopeScaling() throws { try checkAgainstReference("tiny-llama3") }
    func testTinyMistral() throws { try checkAgainstReference("tiny-mistral") }
    func testTinySharded() throws { try checkAgainstReference("tiny-llama-sharded") }
    func testTinyBF16() throws {
        try checkAgainstReference("tiny-llama-bf16")
        try checkAgainstReference("tiny-llama-bf16", path: .kernelsExact)
    }

    /// The same tiny model through NF4 containers: every stored tensor decoded to F32 goes to the
    /// reference's override, so both sides compute with identical weights.
    func testTinyNF4ContainerMatchesReferenceOnDequantizedWeights() throws {
        for name in ["tiny-llama", "tiny-qwen2"] {
            let folder = try Reference.tiny(name)
            let qst4 = Reference.tempPath("\(name).qst4"), decoded = Reference.tempPath("\(name)-dq.safetensors")
            defer { for f in [qst4, decoded] { try? FileManager.default.removeItem(atPath: f) } }
            try buildContainer(from: folder, to: qst4, quantizeEmbeddings: name == "tiny-llama")
            try writeDecodedWeights(container: qst4, to: decoded)
            let ref = try Reference.logits(model: folder, sequences: Self.sequences, override: decoded)
            let refRows = validRows(ref, lengths: Self.sequences.map(\.count))
            for (path, tol) in [(MatmulPath.dequantizeSGEMM, 1e-4), (.kernelsExact, 1e-4), (.kernelsAuto, 2e-2)] {
                let model = try FrozenModel(path: qst4, options: EngineOptions(matmulPath: path))
                let (logits, batch) = try engineLogits(model, Self.sequences)
                let err = relativeFrobenius(
                    validRows(logits, lengths: batch.lengths, seqLen: batch.seqLen, vocab: model.vocabSize), refRows)
                XCTAssertLessThanOrEqual(err, tol, "\(name) NF4 via \(path)")
            }
            // And the NF4 model really differs from the unquantized one (the check above is not vacuous).
            let orig = try Reference.logits(model: folder, sequences: Self.sequences)
            XCTAssertGreaterThan(
                relativeFrobenius(validRows(orig, lengths: Self.sequences.map(\.count)), refRows), 1e-3)
        }
    }

    /// Hidden states handed to the side network equal the reference's per-layer residual stream,
    /// and the returned final state is the final RMSNorm of the last one.
    func testFrozenBackboneHiddenStatesMatchReference() throws {
        let folder = try Reference.tiny("tiny-qwen2")
        let ref = try Reference.hidden(model: folder, sequences: Self.sequences)
        let model = try FrozenModel(path: folder, options: EngineOptions(matmulPath: .dequantizeSGEMM))
        let backbone: FrozenBackbone = model
        let batch = TokenBatch(sequences: Self.sequences)
        let d = backbone.hiddenSize, T = batch.seqLen
        var visited: [Int] = []
        let normed = try backbone.forwardHiddenStates(batch) { i, h in
            visited.append(i)
            var mine: [Double] = [], theirs: [Double] = []
            for (b, len) in batch.lengths.enumerated() {
                for t in 0..<len {
                    mine += (0..<d).map { Double(h[(b * T + t) * d + $0]) }
                    let base = ((i * batch.batch + b) * ref.shape[2] + t) * d
                    theirs += ref.values[base..<base + d]
                }
            }
            XCTAssertLessThanOrEqual(relativeFrobenius(mine, theirs), 1e-5, "hidden state after layer \(i)")
        }
        XCTAssertEqual(visited, Array(0...backbone.layerCount))
        XCTAssertEqual(normed.count, batch.batch * T * d)
        // Logits through headRows from the returned state match the reference logits.
        let logitsRef = try Reference.logits(model: folder, sequences: Self.sequences)
        let head = backbone.headRows()
        let V = backbone.vocabSize
        let scratch = [Float](repeating: 0, count: V * d)
        let w = scratch.withUnsafeBufferPointer { s in
            Array(
                UnsafeBufferPointer(
                    start: head.rows(start: 0, count: V, scratch: UnsafeMutablePointer(mutating: s.baseAddress!)),
                    count: V * d))
        }
        var logits = [Float](repeating: 0, count: batch.batch * T * V)
        for r in 0..<(batch.batch * T) {
            for v in 0..<V {
                var s: Float = 0
                for j in 0..<d { s += normed[r * d + j] * w[v * d + j] }
                logits[r * V + v] = s
            }
        }
        XCTAssertLessThanOrEqual(
            relativeFrobenius(
                validRows(logits, lengths: batch.lengths, seqLen: T, vocab: V),
                validRows(logitsRef, lengths: batch.lengths)), 1e-4)
    }
}
