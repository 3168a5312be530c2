import Foundation
import QSTEngine
import QSTFormat
import QSTNN
import QSTTestSupport
import XCTest
@testable import QSTSide

/// The training loop on the mock backbone: resume is bit-identical, non-finite values stop cleanly,
/// the loss goes down, schedules follow Hugging Face's formulas.
final class SideTrainerTests: XCTestCase {
    let config = SideConfig(
        base: SideFixtures.tinyShape, r: 2, downsample: .adapter, adapterHidden: 3, dropout: 0.1, seed: 4)

    private func examples(_ count: Int, seed: UInt64, shift: Int32 = 3) -> [TrainingExample] {
        var rng = SplitMix64(seed: seed)
        return (0..<count).map { _ in
            let len = 3 + Int(rng.next() % 5)
            // A learnable pattern: each token is the previous plus 3 (mod 11).
            var ids: [Int32] = [Int32(rng.next() % 11)]
            for _ in 1..<len { ids.append((ids.last! + shift) % 11) }
            return TrainingExample.fromSegments([(Array(ids.prefix(1)), false), (Array(ids.dropFirst()), true)])
        }
    }

    private func tempDir() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("qst-run-\(UUID().uuidString)").path
    }

    private func training(steps: Int) -> TrainingConfig {
        var t = TrainingConfig()
        t.batchSize = 3; t.gradAccumulation = 2; t.maxSteps = steps; t.learningRate = 5e-3; t.seed = 9
        return t
    }

    private func freshModel() throws -> SideModel {
        let w = try SideWeights(config: config)
        w.initialize(seed: config.seed)
        return try SideModel(weights: w, backbone: MockBackbone(shape: config.base))
    }

    func testResumeIsBitIdentical() throws {
        let data = examples(14, seed: 1)
        let runA = tempDir(), runB = tempDir()
        defer { try? FileManager.default.removeItem(atPath: runA); try? FileManager.default.removeItem(atPath: runB) }
        let a = try SideTrainer(
            model: try freshModel(), training: training(steps: 20), train: data, eval: [],
            labelTokens: nil, run: runA)
        _ = try a.runToEnd()

        let b1 = try SideTrainer(
            model: try freshModel(), training: training(steps: 20), train: data, eval: [],
            labelTokens: nil, run: runB)
        for _ in 0..<10 { try b1.step() }
        try b1.saveCheckpoint()
        let loaded = try TrainingCheckpoint.load(run: runB)
        XCTAssertEqual(loaded.state, b1.state)
        let b2 = try SideTrainer(
            model: try SideModel(weights: loaded.weights, backbone: MockBackbone(shape: config.base)),
            training: loaded.training, train: data, eval: [], labelTokens: nil, run: runB,
            resumed: (loaded.optimizer, loaded.state))
        _ = try b2.runToEnd()
        XCTAssertEqual(a.state, b2.state)
        for file in [
            "final/side.safetensors", "checkpoint-00000020/optimizer.safetensors",
            "checkpoint-00000020/trainer_state.json",
        ] {
            let x = FileManager.default.contents(atPath: runA + "/" + file)
            let y = FileManager.default.contents(atPath: runB + "/" + file)
            XCTAssertNotNil(x, file)
            XCTAssertTrue(x == y, "\(file) differs between straight and resumed runs")
        }
        // The run did train: weights moved away from the initialisation.
        let initial = try freshModel().weights.values.array
        XCTAssertFalse(b2.model.weights.values.array == initial)
    }

    /// `--block-lr-scale` and `--gate-lr-scale`: the trainer gives the side blocks (`model.qst_layers.*`) and the
    /// layer gates (`model.z.*`) their own learning-rate multipliers. At 0 every tensor of the group keeps its value
    /// bit for bit while the rest still trains; the groups survive a checkpoint (the scales are part of the run's
    /// training configuration).
    func testBlockAndGateLearningRateScalesAreParameterGroups() throws {
        for group in ["model.qst_layers.", "model.z."] {
            let run = tempDir()
            defer { try? FileManager.default.removeItem(atPath: run) }
            var t = training(steps: 4)
            if group == "model.z." { t.gateLearningRateScale = 0 } else { t.blockLearningRateScale = 0 }
            let model = try freshModel()
            let before = model.weights.values.array
            let trainer = try SideTrainer(
                model: model, training: t, train: examples(12, seed: 1), eval: [], labelTokens: nil, run: run)
            XCTAssertEqual(
                trainer.optimizer.lrScales, trainer.optimizer.parameters.map { $0.name.hasPrefix(group) ? 0 : 1 })
            _ = try trainer.runToEnd()
            var frozen = 0, others = 0
            for s in model.weights.specs {
                let moved = (s.offset..<(s.offset + s.count)).contains { model.weights.values[$0] != before[$0] }
                if s.name.hasPrefix(group) {
                    XCTAssertFalse(moved, "\(s.name) is in the frozen group"); frozen += 1
                } else if moved {
                    others += 1
                }
            }
            XCTAssertGreaterThan(frozen, 0, group)
            XCTAssertGreaterThan(others, 0, "the other tensors train")
            let loaded = try TrainingCheckpoint.load(run: run).training
            XCTAssertEqual(group == "model.z." ? loaded.gateLearningRateScale : loaded.blockLearningRateScale, 0)
        }
    }

    func testNonFiniteLossStopsAndKeepsCheckpoint() throws {
        let run = tempDir()
        defer { try? FileManager.default.removeItem(atPath: run) }
        let backbone = MockBackbone(shape: config.base)
        let w = try SideWeights(config: config)
        w.initialize(seed: 1)
        let trainer = try SideTrainer(
            model: try SideModel(weights: w, backbone: backbone), training: training(steps: 10),
            train: examples(8, seed: 2), eval: [], labelTokens: nil, run: run)
        try trainer.step(); try trainer.step()
        try trainer.saveCheckpoint()
        let before = FileManager.default.contents(atPath: run + "/checkpoint-00000002/side.safetensors")
        let weightsBefore = w.values.array
        backbone.poisoned = true
        XCTAssertThrowsError(try trainer.step()) { e in
            XCTAssertTrue("\(e)".contains("non-finite") && "\(e)".contains("step 3"), "\(e)")
        }
        XCTAssertTrue(w.values.array == weightsBefore, "a failed step must not touch the weights")
        XCTAssertEqual(trainer.state.step, 2)
        XCTAssertTrue(FileManager.default.contents(atPath: run + "/checkpoint-00000002/side.safetensors") == before)
        XCTAssertEqual(try TrainingCheckpoint.load(run: run).state.step, 2)
    }

    func testTrainingLowersEvaluationLoss() throws {
        let run = tempDir()
        defer { try? FileManager.default.removeItem(atPath: run) }
        var t = training(steps: 40)
        t.learningRate = 2e-2; t.gradAccumulation = 1; t.evalEvery = 20
        let model = try freshModel()
        let dev = examples(6, seed: 3)
        let before = try Evaluation.run(model: model, examples: dev, labelTokens: nil, batchSize: 4)
        let trainer = try SideTrainer(
            model: model, training: t, train: examples(24, seed: 4), eval: dev,
            labelTokens: nil, run: run)
        let after = try XCTUnwrap(try trainer.runToEnd())
        XCTAssertLessThan(after.loss, 0.7 * before.loss, "eval loss \(before.loss) → \(after.loss)")
        XCTAssertTrue(FileManager.default.fileExists(atPath: run + "/best/side.safetensors"))
        XCTAssertEqual(trainer.state.bestStep, 40)
    }

    /// `--patience 2`: training learns "+3" while the evaluation set follows "+8", so the evaluation loss
    /// turns up before 40 steps; the run must end at the second evaluation without improvement, with the
    /// lowest-loss evaluation's weights in run/best.
    func testEarlyStoppingEndsAfterPatienceAndKeepsTheBest() throws {
        let run = tempDir()
        defer { try? FileManager.default.removeItem(atPath: run) }
        var t = training(steps: 40)
        t.learningRate = 2e-2; t.gradAccumulation = 1; t.evalEvery = 4; t.earlyStoppingPatience = 2
        let trainer = try SideTrainer(
            model: try freshModel(), training: t, train: examples(24, seed: 4),
            eval: examples(6, seed: 3, shift: 8), labelTokens: nil, run: run)
        var evals: [(step: Int, loss: Double)] = []
        trainer.onLog = { if $0.kind == "eval" { evals.append(($0.step, $0.loss)) } }
        _ = try trainer.runToEnd()
        let best = try XCTUnwrap(evals.min { $0.loss < $1.loss })
        XCTAssertLessThan(trainer.state.step, 40, "stopped early instead of running 40 steps")
        XCTAssertEqual(trainer.state.bestStep, best.step)
        XCTAssertEqual(
            trainer.state.step, best.step + 2 * t.evalEvery, "two evaluations without improvement, then stop")
        XCTAssertEqual(evals.last?.step, trainer.state.step)
        XCTAssertEqual(trainer.state.evalsWithoutImprovement, 2)
        let kept = try SafetensorsFile(path: run + "/best/side.safetensors")
        XCTAssertEqual(kept.metadata["step"], String(best.step))
    }

    /// A classifying evaluation set for the `bestMetric` tests: "+8" sequences (training learns "+3"), each labelled
    /// at its last labelled token, class = that token's parity, label tokens 2 and 7.
    private func classifyingEval() -> [TrainingExample] {
        var eval = examples(9, seed: 3, shift: 8)
        for i in eval.indices {
            eval[i].answerPosition = eval[i].labels.lastIndex { $0 != ChunkedCrossEntropy.ignoreIndex }
            eval[i].classLabel = Int(eval[i].labels[eval[i].answerPosition!]) % 2
        }
        return eval
    }

    /// 40 steps at lr 2e-2, evaluated every 4 on `classifyingEval()`; the trainer and its evaluations.
    private func runEvaluated(
        metric: TrainingConfig.BestMetric?, patience: Int = 0
    ) throws -> (SideTrainer, [TrainingLogEntry]) {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var t = training(steps: 40)
        t.learningRate = 2e-2; t.gradAccumulation = 1; t.evalEvery = 4; t.bestMetric = metric
        t.earlyStoppingPatience = patience
        let trainer = try SideTrainer(
            model: try freshModel(), training: t, train: examples(24, seed: 4), eval: classifyingEval(),
            labelTokens: [2, 7], run: dir)
        var evals: [TrainingLogEntry] = []
        trainer.onLog = { if $0.kind == "eval" { evals.append($0) } }
        _ = try trainer.runToEnd()
        return (trainer, evals)
    }

    /// `bestMetric`: on a classifying evaluation set, `.accuracy` (the default) keeps the most accurate evaluation
    /// and `.loss` the lowest-loss one. The two runs train identically (the metric only chooses what is kept); the
    /// fixture is one where the two choices differ, so a criterion that ignored the setting fails one of them.
    func testBestMetricChoosesBetweenAccuracyAndLoss() throws {
        let (byDefault, evals) = try runEvaluated(metric: nil)
        let (byAccuracy, evalsA) = try runEvaluated(metric: .accuracy)
        let (byLoss, evalsL) = try runEvaluated(metric: .loss)
        XCTAssertEqual(evals.map(\.loss), evalsL.map(\.loss), "the metric changed the training")
        XCTAssertEqual(evals.map(\.accuracy), evalsA.map(\.accuracy))
        let accuracies = try evals.map { try XCTUnwrap($0.accuracy) }
        XCTAssertTrue(evals.allSatisfy { $0.loss.isFinite } && accuracies.allSatisfy { $0.isFinite })
        // Ties keep the earlier evaluation (only a strict improvement replaces run/best).
        let mostAccurate = evals[accuracies.firstIndex(of: accuracies.max()!)!]
        let lowestLoss = evals.min { $0.loss < $1.loss }!
        XCTAssertNotEqual(mostAccurate.step, lowestLoss.step, "the fixture must tell the two criteria apart")
        for trainer in [byDefault, byAccuracy] {
            XCTAssertEqual(trainer.state.bestStep, mostAccurate.step)
            XCTAssertEqual(trainer.state.bestMetric, mostAccurate.accuracy)
        }
        XCTAssertEqual(byLoss.state.bestStep, lowestLoss.step)
        XCTAssertEqual(byLoss.state.bestMetric, -lowestLoss.loss)
    }

    /// Scripts/bench-best-metric's claim: one run without early stopping holds every early-stopped run. Its replay
    /// (`bench_best_metric.replay` with its `CRITERIA`, Python) of the full run's evaluations gives, for each
    /// criterion and patience, the step the early-stopped run keeps and the step where it stops.
    func testReplayOfOneRunMatchesEarlyStoppedRuns() throws {
        let python = TestEnvironment.python
        guard FileManager.default.isExecutableFile(atPath: python) else {
            try TestRequirement.unavailable("best-metric replay: no Python at \(python)")
        }
        let (_, full) = try runEvaluated(metric: nil)
        let log = tempDir() + ".jsonl"
        defer { try? FileManager.default.removeItem(atPath: log) }
        let lines = try full.map { String(decoding: try JSONEncoder().encode($0), as: UTF8.self) }
        try (lines.joined(separator: "\n") + "\n").write(toFile: log, atomically: true, encoding: .utf8)
        let scripts = ExportFixtures.repo + "/Scripts"
        var stopped = 0
        for metric in TrainingConfig.BestMetric.allCases {
            for patience in [1, 2, 3] {
                let (trainer, _) = try runEvaluated(metric: metric, patience: patience)
                let code = """
                    import json, sys; sys.path.insert(0, sys.argv[1]); from bench_best_metric import CRITERIA, replay
                    evals = [e for e in map(json.loads, open(sys.argv[2])) if e["kind"] == "eval"]
                    print(*replay(evals, CRITERIA[sys.argv[3]], int(sys.argv[4])))
                    """
                let out = try ExportFixtures.run(
                    python, ["-c", code, scripts, log, metric.rawValue, String(patience)])
                let want = "\(trainer.state.bestStep ?? -1) \(trainer.state.step)"
                let got = out.trimmingCharacters(in: .whitespacesAndNewlines)
                XCTAssertEqual(got, want, "\(metric) patience \(patience)")
                if trainer.state.step < 40 { stopped += 1 }
            }
        }
        XCTAssertGreaterThan(stopped, 2, "the fixture must stop some runs early, or the replay's stop is untested")
    }

    func testSchedulesFollowHuggingFaceFormulas() {
        // get_linear_schedule_with_warmup / get_cosine_schedule_with_warmup with 100 steps, 6 warm-up.
        XCTAssertEqual(LRSchedule.linear.rate(base: 1, step: 0, total: 100, warmup: 6), 0)
        XCTAssertEqual(LRSchedule.linear.rate(base: 1, step: 3, total: 100, warmup: 6), 0.5)
        XCTAssertEqual(LRSchedule.linear.rate(base: 1, step: 6, total: 100, warmup: 6), 1)
        XCTAssertEqual(LRSchedule.linear.rate(base: 1, step: 53, total: 100, warmup: 6), 47.0 / 94, accuracy: 1e-12)
        XCTAssertEqual(LRSchedule.cosine.rate(base: 1, step: 53, total: 100, warmup: 6), 0.5, accuracy: 1e-12)
        XCTAssertEqual(LRSchedule.cosine.rate(base: 2, step: 100, total: 100, warmup: 6), 0, accuracy: 1e-12)
        XCTAssertEqual(LRSchedule.constant.rate(base: 2, step: 80, total: 100, warmup: 6), 2)
        XCTAssertEqual(TrainingConfig().warmupSteps(total: 100), 6)
    }

    func testBatchPlanCoversEveryExampleOnceAndGroupsLengths() {
        let lengths = (0..<103).map { ($0 * 37) % 29 + 1 }
        let plan = BatchPlan.batches(lengths: lengths, batchSize: 8, seed: 1, epoch: 0, groupByLength: true)
        XCTAssertEqual(plan.flatMap { $0 }.sorted(), Array(0..<103))
        let again = BatchPlan.batches(lengths: lengths, batchSize: 8, seed: 1, epoch: 0, groupByLength: true)
        XCTAssertEqual(plan, again)
        XCTAssertNotEqual(
            plan, BatchPlan.batches(lengths: lengths, batchSize: 8, seed: 1, epoch: 1, groupByLength: true))
        // Grouping means less padding than a plain shuffle.
        func padding(_ p: [[Int]]) -> Int {
            p.reduce(0) { acc, b in acc + b.count * b.map { lengths[$0] }.max()! - b.map { lengths[$0] }.reduce(0, +) }
        }
        XCTAssertLessThan(
            padding(plan),
            padding(
                BatchPlan.batches(
                    lengths: lengths, batchSize: 8, seed: 1, epoch: 0,
                    groupByLength: false)))
    }
}
