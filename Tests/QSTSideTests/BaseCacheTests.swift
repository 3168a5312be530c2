import Foundation
import QSTEngine
import QSTFormat
import QSTNN
import XCTest
@testable import QSTSide

/// Counts frozen forwards of the real engine (to see which epochs ran it).
final class CountingBackbone: FrozenBackbone {
    let inner: FrozenModel
    private(set) var forwardCalls = 0
    init(_ inner: FrozenModel) { self.inner = inner }
    var hiddenSize: Int { inner.hiddenSize }
    var layerCount: Int { inner.layerCount }
    var vocabSize: Int { inner.vocabSize }
    var intermediateSize: Int { inner.intermediateSize }
    var attentionHeads: Int { inner.attentionHeads }
    var keyValueHeads: Int { inner.keyValueHeads }
    func forwardHiddenStates(_ batch: TokenBatch, visit: (Int, UnsafePointer<Float>) throws -> Void) throws -> [Float] {
        forwardCalls += 1
        return try inner.forwardHiddenStates(batch, visit: visit)
    }
    func headRows() -> HeadRows { inner.headRows() }
}

/// `qst-tune --cache-base` on the tiny NF4 LLaMA: training with the cache gives the very same weights as
/// without it (two epochs, batches reshuffled and re-padded), resumes, and refuses stale, damaged or
/// unusable caches.
final class BaseCacheTests: XCTestCase {
    private func scratch() throws -> String {
        let d = try ExportFixtures.scratch("basecache")
        addTeardownBlock { try? FileManager.default.removeItem(atPath: (d as NSString).deletingLastPathComponent) }
        return d
    }

    /// Examples of 2…40 tokens, some labelled only at the last position (classification), some at every one.
    /// 13 examples in batches of 3 leave one alone in a batch, few enough rows for the kernels' GEMV loops
    /// unless the engine keeps rows independent; without length grouping the padding changes every epoch.
    private func examples(_ count: Int = 13, seed: UInt64 = 21) -> [TrainingExample] {
        var rng = SplitMix64(seed: seed)
        return (0..<count).map { i in
            let len = i % 2 == 0 ? 2 + Int(rng.next() % 3) : 5 + Int(rng.next() % 36)
            let ids = (0..<len).map { _ in Int32(3 + rng.next() % 290) }
            let split = i % 3 == 0 ? 1 : len - 1
            return TrainingExample.fromSegments([
                (Array(ids.prefix(split)), false), (Array(ids.dropFirst(split)), true),
            ])
        }
    }

    private func training() -> TrainingConfig {
        var t = TrainingConfig()
        t.batchSize = 3; t.epochs = 2; t.learningRate = 1e-2; t.seed = 4; t.maxLength = 64; t.groupByLength = false
        return t
    }

    private struct Setup {
        let frozen: FrozenModel
        let weights: SideWeights
        var identity: BaseCacheIdentity
    }

    private func setup(kind: DownsampleKind = .avgpool) throws -> Setup {
        let frozen = try FrozenModel(path: try ExportFixtures.tinyContainer())
        let weights = try ExportFixtures.sideWeights(for: frozen, r: 2, kind: kind)
        return Setup(
            frozen: frozen, weights: weights,
            identity: try BaseCacheIdentity.of(model: frozen, config: weights.config, maxLength: training().maxLength))
    }

    private func copy(_ w: SideWeights) throws -> SideWeights {
        let c = try SideWeights(config: w.config)
        c.values.pointer.update(from: w.values.pointer, count: w.values.count)
        return c
    }

    /// Trains `steps` (nil = to the end) with an optional cache folder; returns the trainer and backbone.
    @discardableResult
    private func train(
        _ s: Setup, run: String, cache: String?, steps: Int? = nil,
        resumed: (weights: SideWeights, optimizer: AdamW, state: TrainerState)? = nil
    )
        throws -> (trainer: SideTrainer, backbone: CountingBackbone, cache: BaseStateCache?)
    {
        let backbone = CountingBackbone(s.frozen)
        let model = try SideModel(weights: try resumed.map { $0.weights } ?? copy(s.weights), backbone: backbone)
        let store = try cache.map { try BaseStateCache(directory: $0, identity: s.identity, config: s.weights.config) }
        model.frozenStateProvider = store
        let trainer = try SideTrainer(
            model: model, training: training(), train: examples(), eval: [], labelTokens: nil,
            run: run, resumed: resumed.map { ($0.optimizer, $0.state) })
        if let steps {
            for _ in 0..<steps { try trainer.step() }
            try trainer.saveCheckpoint()
        } else {
            _ = try trainer.runToEnd()
        }
        return (trainer, backbone, store)
    }

    private func file(_ run: String, _ name: String) -> Data? { FileManager.default.contents(atPath: run + "/" + name) }

    func testTwoEpochsWithCacheGiveIdenticalWeights() throws {
        let s = try setup()
        let dir = try scratch()
        let plain = try train(s, run: dir + "/plain", cache: nil)
        let cached = try train(s, run: dir + "/cached", cache: dir + "/cache")
        // 13 examples in batches of 3: 5 micro-batches per epoch, composed differently in each epoch.
        let plan = { (e: Int) in
            BatchPlan.batches(
                lengths: self.examples().map(\.ids.count), batchSize: 3, seed: 4,
                epoch: e, groupByLength: false)
        }
        XCTAssertNotEqual(plan(0).map { Set($0) }, plan(1).map { Set($0) })
        // Seed 4 puts a 2-token example alone in epoch 1's last batch (2 rows: the kernels' GEMV loops unless the
        // engine keeps rows independent) and with others in epoch 2, so its cached states come from another shape.
        let lengths = examples().map(\.ids.count)
        XCTAssertEqual(plan(0).last.map { $0.map { lengths[$0] } }, [2])
        XCTAssertEqual(plan(1).first { $0.contains(plan(0).last![0]) }?.count, 3)
        XCTAssertEqual(plain.trainer.state.step, 10)
        XCTAssertEqual(plain.backbone.forwardCalls, 10)
        XCTAssertEqual(cached.backbone.forwardCalls, 5, "epoch 2 must not run the frozen forward")
        XCTAssertEqual(cached.cache?.stats.misses, 13)
        XCTAssertEqual(cached.cache?.stats.hits, 13)
        for name in ["final/side.safetensors", "checkpoint-00000010/optimizer.safetensors"] {
            let a = file(dir + "/plain", name), b = file(dir + "/cached", name)
            XCTAssertNotNil(a, name)
            XCTAssertTrue(a == b, "\(name) differs between the runs with and without the cache")
        }
        XCTAssertFalse(plain.trainer.model.weights.values.array == s.weights.values.array, "the run did not train")
        // A second run over the filled cache never runs the frozen forward.
        let again = try train(s, run: dir + "/again", cache: dir + "/cache")
        XCTAssertEqual(again.backbone.forwardCalls, 0)
        XCTAssertTrue(file(dir + "/again", "final/side.safetensors") == file(dir + "/plain", "final/side.safetensors"))
    }

    /// Held-out evaluation reads the cache too (every evaluation of a run would otherwise rerun the frozen forward):
    /// loss and label-word accuracy equal the evaluation without a cache bit for bit, the first pass stores the
    /// examples, and the second runs the base only for the batch whose answer row is unlabelled (stored states are
    /// exact at labelled rows only, so that batch takes the plain forward).
    func testEvaluationReadsTheCache() throws {
        let s = try setup()
        let dir = try scratch()
        var held = examples(9, seed: 5)
        for i in held.indices {
            held[i].classLabel = i % 2
            held[i].answerPosition = held[i].labels.lastIndex { $0 != ChunkedCrossEntropy.ignoreIndex }
        }
        held[5].answerPosition = 0
        XCTAssertEqual(held[5].labels[0], ChunkedCrossEntropy.ignoreIndex, "example 5 answers at an unlabelled row")
        func evaluate(cache: BaseStateCache?) throws -> (EvaluationResult, calls: Int) {
            let backbone = CountingBackbone(s.frozen)
            let model = try SideModel(weights: try copy(s.weights), backbone: backbone)
            model.frozenStateProvider = cache
            let r = try Evaluation.run(model: model, examples: held, labelTokens: [17, 40], batchSize: 3)
            return (r, backbone.forwardCalls)
        }
        let plain = try evaluate(cache: nil)
        let store = try BaseStateCache(directory: dir + "/cache", identity: s.identity, config: s.weights.config)
        let first = try evaluate(cache: store)
        let second = try evaluate(cache: store)
        XCTAssertEqual(plain.0.labelledTokens, held.reduce(0) { $0 + $1.labelledCount })
        XCTAssertNotNil(plain.0.accuracy)
        XCTAssertTrue(plain.0.loss.isFinite && plain.0.loss > 0, "\(plain.0.loss)")
        XCTAssertEqual(first.0, plain.0, "the first pass through the cache")
        XCTAssertEqual(second.0, plain.0, "the pass that reads the cache")
        XCTAssertEqual(plain.calls, 3)
        XCTAssertEqual(store.stats.misses, 6, "the 6 examples of the two batches whose answers are labelled")
        XCTAssertEqual(store.stats.hits, 6)
        XCTAssertEqual(second.calls, 1, "only the batch with the unlabelled answer row runs the base")
    }

    func testResumeWithCacheMatchesStraightRun() throws {
        let s = try setup()
        let dir = try scratch()
        let straight = try train(s, run: dir + "/straight", cache: nil)
        // Stop in the middle of epoch 1 (some examples stored, some not), resume with a fresh cache object.
        try train(s, run: dir + "/resumed", cache: dir + "/cache", steps: 3)
        let ck = try TrainingCheckpoint.load(run: dir + "/resumed")
        let resumed = try train(
            s, run: dir + "/resumed", cache: dir + "/cache",
            resumed: (ck.weights, ck.optimizer, ck.state))
        XCTAssertEqual(resumed.trainer.state, straight.trainer.state)
        let firstBatches = BatchPlan.batches(
            lengths: examples().map(\.ids.count), batchSize: 3, seed: 4, epoch: 0,
            groupByLength: false
        ).prefix(3).joined().count
        XCTAssertEqual(
            resumed.cache?.stats.misses, 13 - firstBatches, "the examples of the first 3 batches were stored")
        XCTAssertEqual(resumed.cache?.stats.hits, 13, "epoch 2 is served entirely from the cache")
        XCTAssertTrue(
            file(dir + "/resumed", "final/side.safetensors") == file(dir + "/straight", "final/side.safetensors"))
    }

    func testStaleCacheIsRefusedNamingTheSegment() throws {
        let s = try setup()
        let dir = try scratch()
        try train(s, run: dir + "/run", cache: dir + "/cache", steps: 1)
        let segment = try XCTUnwrap(
            try FileManager.default.contentsOfDirectory(atPath: dir + "/cache")
                .first { BaseStateCache.isSegmentName($0) })
        var other = s.identity
        other.base = String(repeating: "0", count: 64)
        var longer = s.identity
        longer.maxLength = 128
        var otherEngine = s.identity
        otherEngine.engine = "matmul=exact cpu=0"
        for (identity, field) in [(other, "base sha256"), (longer, "max length 64 vs 128"), (otherEngine, "engine")] {
            XCTAssertThrowsError(
                try BaseStateCache(directory: dir + "/cache", identity: identity, config: s.weights.config)
            ) { e in
                let m = "\(e)"
                XCTAssertTrue(m.contains(segment) && m.contains("another setup") && m.contains(field), m)
                XCTAssertFalse(m.contains("\n"))
            }
        }
        // A side network with another pooling factor does not match the cache's identity.
        let maxpool = try ExportFixtures.sideWeights(for: s.frozen, r: 2, kind: .maxpool)
        XCTAssertThrowsError(
            try BaseStateCache(directory: dir + "/cache", identity: s.identity, config: maxpool.config)
        ) { e in
            XCTAssertTrue("\(e)".contains("downsample avgpool"), "\(e)")
        }
        let maxpoolIdentity = try BaseCacheIdentity.of(model: s.frozen, config: maxpool.config, maxLength: 64)
        XCTAssertThrowsError(
            try BaseStateCache(directory: dir + "/cache", identity: maxpoolIdentity, config: maxpool.config)
        ) { e in
            XCTAssertTrue("\(e)".contains("downsample avgpool vs maxpool"), "\(e)")
        }
    }

    func testDamagedSegmentIsDetected() throws {
        let s = try setup()
        let dir = try scratch()
        try train(s, run: dir + "/run", cache: dir + "/cache", steps: 1)
        let name = try XCTUnwrap(
            try FileManager.default.contentsOfDirectory(atPath: dir + "/cache")
                .first { BaseStateCache.isSegmentName($0) })
        let path = dir + "/cache/" + name
        var bytes = try XCTUnwrap(FileManager.default.contents(atPath: path))
        // Flip a byte of the last payload: the index still reads, the record does not.
        bytes[bytes.count - 3] ^= 0x40
        try bytes.write(to: URL(fileURLWithPath: path))
        let cache = try BaseStateCache(directory: dir + "/cache", identity: s.identity, config: s.weights.config)
        let model = try SideModel(weights: try copy(s.weights), backbone: s.frozen)
        model.frozenStateProvider = cache
        let t = try SideTrainer(
            model: model, training: training(), train: examples(), eval: [], labelTokens: nil,
            run: dir + "/run2")
        XCTAssertThrowsError(try t.step()) { e in
            XCTAssertTrue("\(e)".contains(path) && "\(e)".contains("CRC-32C mismatch"), "\(e)")
        }
        // Truncated: the index points past the end.
        try Data(bytes.prefix(bytes.count - 10)).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(
            try BaseStateCache(directory: dir + "/cache", identity: s.identity, config: s.weights.config)
        ) { e in
            XCTAssertTrue("\(e)".contains(path) && "\(e)".contains("outside the file"), "\(e)")
        }
    }

    func testTrainableDownsamplerIsRefused() throws {
        for kind in [DownsampleKind.adapter, .linear] {
            let s = try setup(kind: kind)
            XCTAssertThrowsError(
                try BaseStateCache(
                    directory: try scratch(), identity: s.identity, config: s.weights.config,
                    sideOrigin: "side/")
            ) { e in
                XCTAssertTrue(
                    "\(e)".hasPrefix("side/: --cache-base needs a gradient-free downsampler")
                        && "\(e)".contains(kind.rawValue), "\(e)")
            }
        }
    }
}
