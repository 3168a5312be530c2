import Foundation
import QSTEngine
import QSTKernels
import QSTNN
import XCTest
import QSTTestSupport
@testable import QSTSide

/// Ranks of a data-parallel run simulated by threads in one process (the MPI path is tested end to end
/// in QSTToolTests/MPIToolTests): the same global batches give the same weights as one process, up to
/// the order of floating-point sums, and only rank 0 writes.
final class DataParallelTrainerTests: XCTestCase {
    let config = SideConfig(
        base: SideFixtures.tinyShape, r: 2, downsample: .adapter, adapterHidden: 3, dropout: 0.1, seed: 4)

    /// Sums each collective over the ranks in rank order, like an all-reduce.
    final class Rendezvous: @unchecked Sendable {
        let size: Int
        private let cond = NSCondition()
        private var deposits: [[Double]?]
        private var result: [Double] = []
        private var generation = 0
        init(size: Int) { self.size = size; deposits = Array(repeating: nil, count: size) }

        func sum(rank: Int, _ values: [Double]) -> [Double] {
            cond.lock(); defer { cond.unlock() }
            let mine = generation
            deposits[rank] = values
            if deposits.allSatisfy({ $0 != nil }) {
                result = deposits.dropFirst().reduce(deposits[0]!) { acc, d in zip(acc, d!).map { $0 + $1 } }
                deposits = Array(repeating: nil, count: size)
                generation += 1
                cond.broadcast()
            } else {
                while generation == mine { cond.wait() }
            }
            return result
        }
    }

    final class ThreadRank: GradientReducer {
        let rank: Int, rendezvous: Rendezvous
        var size: Int { rendezvous.size }
        init(rank: Int, rendezvous: Rendezvous) { self.rank = rank; self.rendezvous = rendezvous }
        func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
            let s = rendezvous.sum(rank: rank, buffer.map { Double($0) })
            for i in buffer.indices { buffer[i] = Float(s[i]) }
        }
        func allReduceSum(_ values: [Double]) throws -> [Double] { rendezvous.sum(rank: rank, values) }
    }

    private func examples(_ count: Int, seed: UInt64) -> [TrainingExample] {
        var rng = SplitMix64(seed: seed)
        return (0..<count).map { _ in
            let len = 3 + Int(rng.next() % 6)
            var ids: [Int32] = [Int32(rng.next() % 11)]
            for _ in 1..<len { ids.append((ids.last! + 3) % 11) }
            return TrainingExample.fromSegments([(Array(ids.prefix(2)), false), (Array(ids.dropFirst(2)), true)])
        }
    }

    private func trainer(run: String, seed: UInt64 = 9) throws -> SideTrainer {
        var t = TrainingConfig()
        t.batchSize = 3; t.gradAccumulation = 2; t.maxSteps = 8; t.learningRate = 5e-3; t.seed = seed
        t.evalEvery = 4
        let w = try SideWeights(config: config)
        w.initialize(seed: config.seed)
        return try SideTrainer(
            model: try SideModel(weights: w, backbone: MockBackbone(shape: config.base)), training: t,
            train: examples(17, seed: 1), eval: examples(7, seed: 2), labelTokens: nil, run: run)
    }

    private func tempDir() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("qst-dp-\(UUID().uuidString)").path
    }

    /// Each thread touches only its own trainer and result slot.
    final class Box<M: TrainableModel>: @unchecked Sendable {
        let trainers: [Trainer<M>]
        var results: [Result<EvaluationResult?, Error>?]
        let lock = NSLock()
        init(_ trainers: [Trainer<M>]) {
            self.trainers = trainers; results = Array(repeating: nil, count: trainers.count)
        }
        var pending: Bool { lock.withLock { results.contains { $0 == nil } } }
    }

    /// Runs `size` ranks to the end on threads; returns their trainers and final evaluations.
    private func runRanks<M: TrainableModel>(_ size: Int, make: (Int) throws -> Trainer<M>) throws -> [(
        Trainer<M>, EvaluationResult?
    )] {
        let rendezvous = Rendezvous(size: size)
        let trainers = try (0..<size).map { r in
            let t = try make(r)
            t.reducer = ThreadRank(rank: r, rendezvous: rendezvous)
            return t
        }
        let box = Box(trainers)
        for r in 0..<size {
            Thread {
                let out = Result { try box.trainers[r].runToEnd() }
                box.lock.withLock { box.results[r] = out }
            }.start()
        }
        while box.pending { Thread.sleep(forTimeInterval: 0.01) }
        return try (0..<size).map { (trainers[$0], try box.results[$0]!.get()) }
    }

    func testRanksReproduceOneProcessUpToSummationOrder() throws {
        let single = tempDir()
        defer { try? FileManager.default.removeItem(atPath: single) }
        let one = try trainer(run: single)
        let oneEval = try XCTUnwrap(try one.runToEnd())
        let reference = one.model.weights.values.array
        let initial = try trainer(run: tempDir()).model.weights.values.array
        let moved = Closeness.maxAbsoluteError(reference, initial)
        XCTAssertGreaterThan(moved, 1e-3, "training must move the weights for the comparison to mean anything")
        // 4 ranks with micro-batches of 3: one rank has nothing to compute in every micro-batch.
        for size in [2, 3, 4] {
            let runs = (0..<size).map { _ in tempDir() }
            defer { for run in runs { try? FileManager.default.removeItem(atPath: run) } }
            let ranks = try runRanks(size) { try trainer(run: runs[$0]) }
            for (r, (t, eval)) in ranks.enumerated() {
                let diff = Closeness.maxAbsoluteError(t.model.weights.values.array, reference)
                XCTAssertLessThanOrEqual(diff, 1e-5, "\(size) ranks, rank \(r): weights differ by \(diff)")
                // Data position, dropout stream and step agree exactly; the best metric (an evaluation loss) up to rounding.
                var state = t.state
                XCTAssertEqual(
                    try XCTUnwrap(state.bestMetric), try XCTUnwrap(one.state.bestMetric),
                    accuracy: 1e-5 * abs(oneEval.loss))
                state.bestMetric = one.state.bestMetric
                XCTAssertEqual(state, one.state, "\(size) ranks, rank \(r)")
                let e = try XCTUnwrap(eval)
                XCTAssertEqual(e.labelledTokens, oneEval.labelledTokens)
                XCTAssertEqual(e.loss, oneEval.loss, accuracy: 1e-5 * abs(oneEval.loss))
            }
            // Every rank took identical steps (the reduced gradients are the same everywhere).
            for (t, _) in ranks.dropFirst() {
                XCTAssertEqual(t.model.weights.values.array, ranks[0].0.model.weights.values.array)
            }
            XCTAssertTrue(FileManager.default.fileExists(atPath: runs[0] + "/final/side.safetensors"))
            XCTAssertTrue(FileManager.default.fileExists(atPath: runs[0] + "/" + TrainingCheckpoint.pointerName))
            for run in runs.dropFirst() {
                XCTAssertFalse(FileManager.default.fileExists(atPath: run), "rank > 0 wrote \(run)")
            }
        }
        // A different seed (other batches and dropout) lands far outside the bound: the check can fail.
        let other = tempDir()
        defer { try? FileManager.default.removeItem(atPath: other) }
        let o = try trainer(run: other, seed: 10)
        _ = try o.runToEnd()
        XCTAssertGreaterThan(Closeness.maxAbsoluteError(o.model.weights.values.array, reference), 1e-3)
    }

    /// LoRA through the same loop: its dropout also draws per example, so 2 ranks match one process.
    func testLoRARanksReproduceOneProcess() throws {
        // The all-reduced gradient differs from one process's in the last bits, and the LoRA weights carry
        // that into the next step's activations. The int16 GEMM (auto on CPUs without AVX512_BF16)
        // rounds activations with one scale per 32 elements, so a last-bit change of a group's maximum
        // moves every element of the group and can flip a rounding; AdamW turns such a gradient change
        // into up to lr for near-zero gradients: 8.6e-4 after 4 steps (int16; 9.9e-4 with int8), as far
        // as another seed. There this check of the data-parallel loop runs with F32 products (AVX-512's
        // bfloat16 rounding has no shared scale and stays within the bound).
        let path: MatmulPath = Self.autoPromptPathIsInt8() ? .kernelsExact : .kernelsAuto
        let one = try LoRATrainerTests.trainer(
            run: try ExportFixtures.scratch("dp-lora-one"), steps: 4, matmulPath: path)
        _ = try one.runToEnd()
        let reference = one.model.weights.values.array
        let initial = try LoRATrainerTests.trainer(
            run: try ExportFixtures.scratch("dp-lora-init"), steps: 4,
            matmulPath: path
        ).model.weights.values.array
        XCTAssertGreaterThan(Closeness.maxAbsoluteError(reference, initial), 1e-3)
        let runs = try (0..<2).map { try ExportFixtures.scratch("dp-lora-\($0)") }
        let ranks = try runRanks(2) { try LoRATrainerTests.trainer(run: runs[$0], steps: 4, matmulPath: path) }
        for (r, (t, _)) in ranks.enumerated() {
            let diff = Closeness.maxAbsoluteError(t.model.weights.values.array, reference)
            XCTAssertLessThanOrEqual(diff, 1e-5, "LoRA rank \(r): weights differ by \(diff)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: runs[1] + "/final"))
    }

    /// Whether `--matmul auto` runs many-row NF4 products (block 64, a side of 1024) in the integer GEMM on this CPU.
    static func autoPromptPathIsInt8() -> Bool {
        var w = qst_weight(type: QST_WEIGHT_NF4, block: 64, n: 1024, k: 64, ld: 64, data: nil, absmax: nil)
        let path = qst_matmul_resolve(&w, 512, QST_KERNEL_AUTO, QST_SHAPE_GEMM)
        return path == Int32(QST_KERNEL_AVX2_INT16.rawValue) || path == Int32(QST_KERNEL_AVX512_INT16.rawValue)
    }

    func testShardsCoverTheBatchContiguously() {
        for size in 1...5 {
            for count in 0...11 {
                let parts = (0..<size).map { r in ThreadRank(rank: r, rendezvous: Rendezvous(size: size)).shard(count) }
                XCTAssertEqual(parts.flatMap { Array($0) }, Array(0..<count))
                XCTAssertLessThanOrEqual(parts.map(\.count).max()! - parts.map(\.count).min()!, 1)
            }
        }
    }
}
