import Foundation
import QSTEngine
import QSTFormat
import QSTNN
import XCTest
import QSTTestSupport
@testable import QSTSide

/// `qst-init-side --init base` (Formats/SIDE.md §2, Formats/RUNS.md §1.2: residual head mix, zero `upsample`): at step 0 the tuned
/// model IS the base model, bit for bit on the exact path, and training moves away from it along the gradient.
final class BaseInitTests: XCTestCase {
    let exact = EngineOptions(matmulPath: .dequantizeSGEMM)

    /// A `--init base` (or `base-pruned`) side network for `base` (what qst-init-side writes).
    private func baseInit(
        _ base: FrozenModel, r: Int? = nil, kind: DownsampleKind = .adapter, start: SideInitialisation = .base
    ) throws -> SideWeights {
        let shape = try BaseShape.parse(configJSON: try base.source.configJSON(), context: "test")
        let config = SideConfig(
            base: shape, r: r ?? SideConfig.defaultReduction(for: shape), downsample: kind,
            seed: 7, headMix: start.headMix)
        let w = try SideWeights(config: config)
        w.initialize(seed: 7)
        if start == .basePruned {
            let source = base.source
            try PrunedBaseInit.apply(
                try PrunedBaseInit.select(config: config, source: source), source: source, to: w)
        }
        return w
    }

    private func bits(_ a: [Float]) -> [UInt32] { a.map(\.bitPattern) }

    /// Tuned logits (inference path) and the training forward's head input against the base's own.
    private func assertIsBase(
        _ base: FrozenModel, _ side: SideWeights, _ sequences: [[Int32]],
        file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let batch = TokenBatch(sequences: sequences)
        let plain = try base.logits(batch).array
        let tuned = try TunedModel(base: base, sides: [side]).logits(batch)[0].array
        XCTAssertTrue(plain.allSatisfy(\.isFinite), file: file, line: line)
        XCTAssertEqual(plain.count, tuned.count, file: file, line: line)
        XCTAssertTrue(
            bits(plain) == bits(tuned), "tuned logits differ from the base's at step 0", file: file, line: line)
        let final = try base.forwardHiddenStates(batch) { _, _ in }
        let o = try SideModel(weights: side, backbone: base).outputHidden(batch).array
        // Equal as numbers: x + 0 is x bit for bit except that −0 + 0 = +0, which no product tells apart.
        XCTAssertTrue(final.allSatisfy(\.isFinite), file: file, line: line)
        XCTAssertTrue(final == o, "training head input differs from norm(h_L)", file: file, line: line)
    }

    func testTinyModelStartsAsItsBaseBitForBit() throws {
        let base = try FrozenModel(path: try ExportFixtures.tinyContainer(), options: exact)
        for kind in [DownsampleKind.adapter, .avgpool] {
            try assertIsBase(
                base, try baseInit(base, r: 2, kind: kind), [[1, 17, 42, 99, 5, 250, 7, 3, 64], [1, 200, 13, 8, 111]])
        }
        // The pruned-base blocks (LST's start) sit behind the same zero upsample: still the base.
        for kind in [DownsampleKind.linear, .adapter] {
            try assertIsBase(
                base, try baseInit(base, r: 2, kind: kind, start: .basePruned),
                [[1, 17, 42, 99, 5, 250, 7, 3, 64], [1, 200, 13, 8, 111]])
        }
        // The reference initialisation does not: its head mixes 27 % of a random projection in.
        let shape = try BaseShape.parse(configJSON: try base.source.configJSON(), context: "test")
        let ref = try SideWeights(config: SideConfig(base: shape, r: 2))
        ref.initialize(seed: 7)
        let batch = TokenBatch(sequences: [[1, 17, 42, 99, 5]])
        XCTAssertNotEqual(try base.logits(batch).array, try TunedModel(base: base, sides: [ref]).logits(batch)[0].array)
    }

    /// Step 0: only `upsample` has a gradient (as LoRA's B); after one step along it the loss is lower and
    /// every trainable tensor of the network has a gradient.
    func testFirstStepsMoveAlongTheGradientAndReachEveryTensor() throws {
        let base = try FrozenModel(path: try ExportFixtures.tinyContainer(), options: exact)
        for start in [SideInitialisation.base, .basePruned] {
            try assertFirstStepsMoveAlongTheGradient(base, try baseInit(base, r: 2, start: start))
        }
    }

    private func assertFirstStepsMoveAlongTheGradient(_ base: FrozenModel, _ side: SideWeights) throws {
        let model = try SideModel(weights: side, backbone: base)
        let seqs: [[Int32]] = [[1, 17, 42, 99, 5, 250, 7, 3, 64], [1, 200, 13, 8, 111]]
        let tokens = TokenBatch(sequences: seqs)
        var labels = [Int32](repeating: ChunkedCrossEntropy.ignoreIndex, count: tokens.ids.count)
        for (b, s) in seqs.enumerated() { for t in 0..<(s.count - 1) { labels[b * tokens.seqLen + t] = s[t + 1] } }
        let batch = SideBatch(tokens: tokens, labels: labels)
        func step() throws -> Double {
            side.zeroGradients()
            var rng = SplitMix64(seed: 1)
            return try model.trainStep(batch, rng: &rng).mean
        }
        func norm(_ s: SideTensorSpec) -> Double {
            (0..<s.count).reduce(0) { $0 + Double(side.grads[s.offset + $1] * side.grads[s.offset + $1]) }.squareRoot()
        }
        let loss0 = try step()
        XCTAssertEqual(loss0, try model.evaluationLoss(batch).mean, accuracy: 1e-6, "step-0 loss is the base's")
        for s in side.specs {
            if s.name.hasPrefix("upsample.") {
                XCTAssertGreaterThan(norm(s), 1e-6, "\(s.name) must move at step 0")
            } else {
                XCTAssertEqual(norm(s), 0, "\(s.name) has no gradient while upsample is zero")
            }
        }
        // One normalised gradient step (what Adam's first step amounts to), then the loss and gradients again.
        let total = side.specs.reduce(0) { $0 + norm($1) * norm($1) }.squareRoot()
        for j in 0..<side.grads.count { side.values[j] -= Float(0.05 / total) * side.grads[j] }
        let loss1 = try step()
        XCTAssertLessThan(loss1, loss0, "a step along −gradient lowers the loss")
        for s in side.specs {
            XCTAssertGreaterThan(norm(s), 0, "\(s.name) has a gradient after the first step")
        }
    }

    /// A trained (here: perturbed) residual-mix network, exported, against Scripts/tuned_reference.py.
    func testResidualMixAdapterMatchesFloat64Reference() throws {
        let container = try ExportFixtures.tinyContainer()
        let base = try FrozenModel(path: container, options: exact)
        let side = try baseInit(base, r: 2)
        var rng = SplitMix64(seed: 23)
        for j in 0..<side.values.count { side.values[j] += 0.3 * (rng.nextFloat() - 0.5) }
        let dir = try ExportFixtures.exportAdapter(side, base: base, name: "adapter-residual")
        let seqs: [[Int32]] = [[1, 17, 42, 99, 5, 250, 7], [1, 200, 13]]
        let batch = TokenBatch(sequences: seqs)
        let loaded = try XCTUnwrap(
            try TunedModelSpec.open(modelPath: container, sidePaths: [dir], options: exact).tunedModel())
        XCTAssertEqual(loaded.sides[0].config.mix, .residual, "the head mix survives export and loading")
        let swift = try loaded.logits(batch)[0].array.map(Double.init)
        let ref = try ExportFixtures.referenceLogits(container: container, adapter: dir, sequences: seqs)
        let V = base.vocabSize
        XCTAssertLessThan(
            relativeFrobenius(
                ExportFixtures.validRows(swift, lengths: batch.lengths, seqLen: batch.seqLen, vocab: V),
                ExportFixtures.validRows(ref, lengths: batch.lengths, seqLen: batch.seqLen, vocab: V)), 1e-5)
    }

    /// SmolLM2-135M-Instruct through qst-quantize's container, with the default r for its width (8).
    func testSmolLM2StartsAsItsBaseBitForBit() throws {
        #if DEBUG
            if ExportFixtures.env["QST_REAL_MODEL_TESTS"] != "1" {
                throw XCTSkip("real-model test skipped in debug builds (set QST_REAL_MODEL_TESTS=1)")
            }
        #endif
        let folder = TestEnvironment.realModelF32
        guard FileManager.default.fileExists(atPath: folder + "/model.safetensors") else {
            try ExportFixtures.unavailable("SmolLM2 f32 folder not found at \(folder)")
        }
        let container = try ExportFixtures.scratch("smollm2-base-init.qst4")
        defer { try? FileManager.default.removeItem(atPath: container) }
        _ = try QST4Quantize(
            source: folder, output: container, policy: QuantizationPolicy(), createdBy: "BaseInitTests"
        ).run()
        let base = try FrozenModel(path: container, options: exact)
        let tok = try base.source.loadTokenizer()
        let prompts = ["The capital of France is", "Review: a gripping film\nSentiment:"].map {
            tok.encode($0).map(Int32.init)
        }
        for (start, kind) in [(SideInitialisation.base, DownsampleKind.adapter), (.basePruned, .linear)] {
            let side = try baseInit(base, kind: kind, start: start)
            XCTAssertEqual(side.config.r, 8)
            try assertIsBase(base, side, prompts)
        }
    }
}
