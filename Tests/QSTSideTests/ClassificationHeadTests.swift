import Foundation
import QSTEngine
import QSTFormat
import QSTNN
import QSTTestSupport
import QSTTokenizer
import XCTest
@testable import QSTSide

/// The side network's classification head on the mock backbone: layout and files, GLUE examples for it,
/// training (cross-entropy and regression), resume and export. Its gradients are checked against the
/// float64 reference in SideReferenceTests and by finite differences in SequenceClassificationTests.
final class ClassificationHeadTests: XCTestCase {
    let config = SideConfig(
        base: SideFixtures.tinyShape, r: 2, downsample: .adapter, adapterHidden: 3, dropout: 0.1, seed: 4)

    private func tempDir() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("qst-head-\(UUID().uuidString)").path
    }

    /// Class 1 when the sequence's last token is above 5, read at the last token; regression target = last token / 5.
    private func examples(_ count: Int, seed: UInt64, regression: Bool = false) -> [TrainingExample] {
        var rng = SplitMix64(seed: seed)
        return (0..<count).map { _ in
            let len = 2 + Int(rng.next() % 5)
            let ids = (0..<len).map { _ in Int32(1 + rng.next() % 10) }
            let last = ids[len - 1]
            var labels = [Int32](repeating: ChunkedCrossEntropy.ignoreIndex, count: len)
            labels[len - 1] = regression ? 0 : (last > 5 ? 1 : 0)
            return TrainingExample(
                ids: ids, labels: labels, classLabel: regression ? nil : Int(labels[len - 1]),
                answerPosition: len - 1, regressionTarget: regression ? Float(last) / 5 : nil)
        }
    }

    private func headModel(labels: Int, seed: UInt64 = 4) throws -> SideModel {
        let w = try SideWeights(config: config)
        w.initialize(seed: seed)
        return try SideModel(
            weights: try ClassificationHead.attach(to: w, numLabels: labels, seed: seed),
            backbone: MockBackbone(shape: config.base))
    }

    private func training(steps: Int) -> TrainingConfig {
        var t = TrainingConfig()
        t.batchSize = 4; t.maxSteps = steps; t.learningRate = 2e-2; t.seed = 9; t.warmupRatio = 0; t.weightDecay = 0
        return t
    }

    func testAttachKeepsTheSideNetworkAndRoundTrips() throws {
        let plain = try SideWeights(config: config)
        plain.initialize(seed: 1)
        let withHead = try ClassificationHead.attach(to: plain, numLabels: 3, seed: 1)
        XCTAssertEqual(withHead.config.numLabels, 3)
        for s in plain.specs {
            XCTAssertEqual(withHead.spec(s.name), s, "side tensors keep their place")
            XCTAssertTrue(
                Array(UnsafeBufferPointer(start: withHead.value(s.name), count: s.count))
                    == Array(UnsafeBufferPointer(start: plain.value(s.name), count: s.count)), s.name)
        }
        XCTAssertEqual(withHead.spec("score.weight")?.shape, [3, 16])
        XCTAssertEqual(withHead.spec("score.bias")?.shape, [3])
        let head = Array(UnsafeBufferPointer(start: withHead.value("score.weight"), count: 48))
        XCTAssertTrue(head.allSatisfy { abs($0) <= 0.25 } && head.contains { $0 != 0 }, "U(±1/√16) init")
        XCTAssertThrowsError(try ClassificationHead.attach(to: withHead, numLabels: 2, seed: 1))
        XCTAssertTrue(try ClassificationHead.attach(to: withHead, numLabels: 3, seed: 1) === withHead)
        XCTAssertNil(plain.spec("score.weight"), "no head unless asked for")

        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try SideWeightsIO.save(withHead, directory: dir + "/side")
        let loaded = try SideWeightsIO.load(directory: dir + "/side")
        XCTAssertEqual(loaded.config, withHead.config)
        XCTAssertTrue(loaded.values.array == withHead.values.array)
        // A side folder without a head still reads (numLabels absent from its JSON).
        try SideWeightsIO.save(plain, directory: dir + "/plain")
        let json = try String(contentsOfFile: dir + "/plain/side_config.json", encoding: .utf8)
        XCTAssertFalse(json.contains("numLabels"))
        XCTAssertNil(try SideWeightsIO.load(directory: dir + "/plain").config.numLabels)
        // Exported adapters carry the head under the same names.
        let identity = BaseIdentity(
            architecture: "LlamaForCausalLM", modelType: "llama", dimensions: config.base,
            tensorDirectorySHA256: nil)
        try AdapterIO.save(
            withHead,
            config: AdapterConfig(
                base: identity, side: withHead.config, dtype: .f32,
                origin: ExportOrigin(checkpoint: "final")), directory: dir + "/adapter")
        let file = try SafetensorsFile(path: dir + "/adapter/" + AdapterIO.weightsFileName)
        XCTAssertEqual(file.tensors["score.weight"]?.shape, [3, 16])
        XCTAssertEqual(file.tensors["score.bias"]?.shape, [3])
        let adapter = try AdapterIO.load(directory: dir + "/adapter")
        XCTAssertTrue(adapter.weights.values.array == withHead.values.array)
    }

    /// `--head-init label-words`: the head starts as the LM head's rows of the label words with a zero bias, so
    /// with `--init base` (o = norm(h_N) at step 0) its logits are the frozen model's label-word logits.
    func testLabelWordHeadStartsAsTheZeroShotClassifier() throws {
        let base = SideConfig(
            base: SideFixtures.tinyShape, r: 2, downsample: .adapter, adapterHidden: 3, dropout: 0.1,
            seed: 4, headMix: SideInitialisation.base.headMix)
        let w = try SideWeights(config: base)
        w.initialize(seed: 4)
        let backbone = MockBackbone(shape: base.base)
        let tokens: [Int32] = [7, 3]
        let rows = try ClassificationHead.labelWordRows(head: backbone.headRows(), tokens: tokens)
        let d = base.base.hiddenSize
        for (c, t) in tokens.enumerated() {
            XCTAssertEqual(Array(rows[c * d..<(c + 1) * d]), Array(backbone.embed.array[Int(t) * d..<(Int(t) + 1) * d]))
        }
        XCTAssertThrowsError(
            try ClassificationHead.labelWordRows(head: backbone.headRows(), tokens: [Int32(base.base.vocabSize)]))
        XCTAssertThrowsError(try ClassificationHead.attach(to: w, numLabels: 3, seed: 1, labelRows: rows), "K × d rows")
        let model = try SideModel(
            weights: try ClassificationHead.attach(to: w, numLabels: 2, seed: 1, labelRows: rows),
            backbone: backbone)
        XCTAssertEqual(Array(UnsafeBufferPointer(start: model.weights.value("score.bias"), count: 2)), [0, 0])
        var checked = 0
        for ex in examples(6, seed: 3) {
            let o = try model.outputHidden(BatchPlan.collate([ex]).tokens)
            let last = ex.ids.count - 1
            let head = try model.classifierLogits(hidden: o, rows: [last])
            let hN = try backbone.forwardHiddenStates(BatchPlan.collate([ex]).tokens) { _, _ in }
            var words = [Float](repeating: 0, count: 2)
            try hN.withUnsafeBufferPointer { h in
                try ChunkedCrossEntropy.candidateLogits(
                    out: &words, hidden: h.baseAddress! + last * d, n: 1,
                    head: backbone.headRows(), candidates: tokens)
            }
            for c in 0..<2 {
                XCTAssertEqual(head[c], words[c], accuracy: 1e-5 * max(1, abs(words[c])), "class \(c)")
                XCTAssertNotEqual(words[c], 0)
            }
            checked += 1
        }
        XCTAssertEqual(checked, 6)
    }

    func testGLUEExamplesForTheHeadEndAtThePrompt() throws {
        let dir = tempDir()
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // MRPC's real files start with a byte-order mark.
        let tsv = "\u{FEFF}Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tab\tcd\n0\t3\t4\tef\tgh\n"
        try tsv.write(toFile: dir + "/mrpc.tsv", atomically: true, encoding: .utf8)
        let task = try GLUETask.named("mrpc")
        let head = try task.load(
            path: dir + "/mrpc.tsv", tokenizer: ToyTokenizer(), maxLength: 512, skipBad: false, head: true)
        XCTAssertEqual(head.examples.count, 2)
        let rows = [["#1 String": "ab", "#2 String": "cd"], ["#1 String": "ef", "#2 String": "gh"]]
        for (row, h) in zip(rows, head.examples) {
            // The prompt alone (no label word); the class index sits at its last token.
            XCTAssertEqual(h.ids, ToyTokenizer().encodeIDs(task.prompt(row), addSpecialTokens: true))
            XCTAssertEqual(h.answerPosition, h.ids.count - 1)
            XCTAssertEqual(h.labelledCount, 1)
            XCTAssertEqual(h.labels[h.ids.count - 1], Int32(h.classLabel ?? -1))
        }
        // The label-word loader puts the word after the same prompt and reads the same position.
        let words = try task.load(
            path: dir + "/mrpc.tsv", tokenizer: DistinctWordsTokenizer(), maxLength: 512, skipBad: false)
        let head2 = try task.load(
            path: dir + "/mrpc.tsv", tokenizer: DistinctWordsTokenizer(), maxLength: 512,
            skipBad: false, head: true)
        for (w, h) in zip(words.examples, head2.examples) {
            XCTAssertEqual(h.ids, Array(w.ids.dropLast()))
            XCTAssertEqual(h.answerPosition, w.answerPosition)
        }
        XCTAssertEqual(head.examples.map(\.classLabel), [1, 0])
    }

    func testClassifierTrainsResumesAndEvaluates() throws {
        let data = examples(40, seed: 1), dev = examples(30, seed: 2)
        let before = try Evaluation.run(model: try headModel(labels: 2), examples: dev, labelTokens: nil, batchSize: 8)
        let runA = tempDir(), runB = tempDir()
        defer { try? FileManager.default.removeItem(atPath: runA); try? FileManager.default.removeItem(atPath: runB) }
        let a = try SideTrainer(
            model: try headModel(labels: 2), training: training(steps: 80), train: data, eval: dev,
            labelTokens: nil, run: runA)
        let after = try XCTUnwrap(try a.runToEnd())
        XCTAssertLessThan(after.loss, 0.6 * before.loss, "head loss \(before.loss) → \(after.loss)")
        XCTAssertGreaterThanOrEqual(
            after.accuracy ?? 0, 0.9, "accuracy \(before.accuracy ?? -1) → \(after.accuracy ?? -1)")
        // Evaluation's accuracy is the head's argmax at the last token.
        let scores = try SequencePredictor.scores(model: a.model, examples: dev, labelTokens: nil, batchSize: 5)
        XCTAssertEqual(scores.mode, .head)
        let manual = try dev.map { ex -> Int in
            let o = try a.model.outputHidden(BatchPlan.collate([ex]).tokens)
            let z = try a.model.classifierLogits(hidden: o, rows: [ex.ids.count - 1])
            return z[1] > z[0] ? 1 : 0
        }
        XCTAssertEqual(SequencePredictor.classes(scores.scores), manual)
        XCTAssertEqual(
            GLUEMetrics.accuracy(predicted: manual, gold: dev.map { $0.classLabel ?? -1 }), after.accuracy ?? -1,
            accuracy: 1e-12)

        // Resume from a checkpoint at step 40: the head is in the checkpoint and the result is identical.
        let b1 = try SideTrainer(
            model: try headModel(labels: 2), training: training(steps: 80), train: data, eval: dev,
            labelTokens: nil, run: runB)
        for _ in 0..<40 { try b1.step() }
        try b1.saveCheckpoint()
        let optimizer = try SafetensorsFile(path: runB + "/checkpoint-00000040/optimizer.safetensors")
        XCTAssertNotNil(optimizer.tensors["m.score.weight"])
        let loaded = try TrainingCheckpoint.load(run: runB)
        XCTAssertEqual(loaded.weights.config.numLabels, 2)
        let b2 = try SideTrainer(
            model: try SideModel(weights: loaded.weights, backbone: MockBackbone(shape: config.base)),
            training: loaded.training, train: data, eval: dev, labelTokens: nil, run: runB,
            resumed: (loaded.optimizer, loaded.state))
        _ = try b2.runToEnd()
        XCTAssertTrue(
            FileManager.default.contents(atPath: runA + "/final/side.safetensors")
                == FileManager.default.contents(atPath: runB + "/final/side.safetensors"))
    }

    /// `--head-pool mean`: the head reads the mean of `o` over each sequence's positions 0 … answer position,
    /// checked against means computed in Double from each example run alone (so padding in the batch cannot
    /// leak in), and the gradient of the pooled loss against central finite differences.
    func testMeanPooledHeadReadsTheSequenceMeanAndItsGradient() throws {
        let plainConfig = SideConfig(
            base: SideFixtures.tinyShape, r: 2, downsample: .linear, dropout: 0, seed: 6)
        let w = try SideWeights(config: plainConfig)
        w.initialize(seed: 6)
        let weights = try ClassificationHead.attach(to: w, numLabels: 2, seed: 6, pooling: .mean)
        XCTAssertEqual(weights.config.headPooling, .mean)
        let model = try SideModel(weights: weights, backbone: MockBackbone(shape: plainConfig.base))
        let d = plainConfig.base.hiddenSize
        let data = examples(5, seed: 8)
        XCTAssertGreaterThan(Set(data.map(\.ids.count)).count, 1, "lengths differ: the batch is padded")
        let batch = BatchPlan.collate(data)
        let T = batch.tokens.seqLen
        let o = try model.outputHidden(batch.tokens)
        let z = try model.classifierLogits(hidden: o, rows: data.indices.map { $0 * T + data[$0].ids.count - 1 })
        let W = Array(UnsafeBufferPointer(start: weights.value("score.weight"), count: 2 * d))
        let bias = Array(UnsafeBufferPointer(start: weights.value("score.bias"), count: 2))
        var reference: [Double] = []
        for ex in data {
            let alone = try model.outputHidden(BatchPlan.collate([ex]).tokens).array
            let len = ex.ids.count
            var mean = [Double](repeating: 0, count: d)
            for t in 0..<len { for j in 0..<d { mean[j] += Double(alone[t * d + j]) / Double(len) } }
            for c in 0..<2 {
                var s = Double(bias[c])
                for j in 0..<d { s += Double(W[c * d + j]) * mean[j] }
                reference.append(s)
            }
        }
        assertClose(z.map(Double.init), reference, rtol: 1e-4, atol: 1e-5, "mean-pooled head logits")
        let last = try ClassificationHead.logits(
            weights: try ClassificationHead.attach(to: w, numLabels: 2, seed: 6), hidden: o,
            rows: data.indices.map { $0 * T + data[$0].ids.count - 1 })
        XCTAssertNotEqual(last, z, "the last-token head reads something else")
        XCTAssertThrowsError(
            try model.classifierLogits(hidden: o, rows: [0, 1]), "rows outside their sequences are refused")

        // Gradient of the pooled cross-entropy: every tensor, a few elements each, against finite differences.
        func loss() throws -> Double {
            weights.zeroGradients()
            var rng = SplitMix64(seed: 1)
            return try model.trainStep(batch, rng: &rng).mean
        }
        _ = try loss()
        let analytic = weights.grads.array
        var rng = SplitMix64(seed: 2)
        var an: [Double] = [], fd: [Double] = []
        for s in weights.specs {
            for _ in 0..<3 {
                let k = s.offset + Int(rng.next() % UInt64(s.count))
                let saved = weights.values[k], h: Float = 1e-2
                weights.values[k] = saved + h
                let lp = try loss()
                weights.values[k] = saved - h
                let lm = try loss()
                weights.values[k] = saved
                fd.append((lp - lm) / Double(2 * h)); an.append(Double(analytic[k]))
            }
        }
        let scale = fd.map(abs).max() ?? 0
        XCTAssertGreaterThan(scale, 1e-4, "gradients are not all zero")
        assertClose(
            an, fd, rtol: 1e-2, atol: max(2e-4, 1e-2 * scale), "mean-pooled head: analytic vs finite difference")

        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try SideWeightsIO.save(weights, directory: dir)
        XCTAssertEqual(try SideWeightsIO.load(directory: dir).config.headPooling, .mean)
        let lastHead = try ClassificationHead.attach(to: w, numLabels: 2, seed: 6)
        try SideWeightsIO.save(lastHead, directory: dir + "/last")
        XCTAssertFalse(
            try String(contentsOfFile: dir + "/last/side_config.json", encoding: .utf8).contains("headPooling"),
            "last-token pooling writes nothing: older readers still load the file")
    }

    func testRegressionHeadLowersSquaredError() throws {
        let data = examples(40, seed: 3, regression: true), dev = examples(20, seed: 4, regression: true)
        let model = try headModel(labels: 1)
        let before = try Evaluation.run(model: model, examples: dev, labelTokens: nil, batchSize: 8)
        XCTAssertNil(before.accuracy)
        let run = tempDir()
        defer { try? FileManager.default.removeItem(atPath: run) }
        let trainer = try SideTrainer(
            model: model, training: training(steps: 120), train: data, eval: dev,
            labelTokens: nil, run: run)
        let after = try XCTUnwrap(try trainer.runToEnd())
        XCTAssertLessThan(after.loss, 0.3 * before.loss, "mean squared error \(before.loss) → \(after.loss)")
        let scores = try SequencePredictor.scores(model: model, examples: dev, labelTokens: nil, batchSize: 8).scores
        let predicted = scores.map { Double($0[0]) }, gold = dev.map { Double($0.regressionTarget ?? 0) }
        let fit = try SequencePredictor.scores(model: model, examples: data, labelTokens: nil, batchSize: 8).scores
        let rTrain = GLUEMetrics.pearson(fit.map { Double($0[0]) }, data.map { Double($0.regressionTarget ?? 0) })
        let rDev = GLUEMetrics.pearson(predicted, gold)
        XCTAssertGreaterThan(rTrain, 0.9, "Pearson r on the training set")
        XCTAssertGreaterThan(rDev, 0.5, "Pearson r on held-out examples")
        XCTAssertEqual(SequencePredictor.classes(scores), Array(repeating: -1, count: dev.count))
    }
}

/// The toy tokenizer, except that a word's first character is its own token so label words differ.
private struct DistinctWordsTokenizer: ExampleTokenizer {
    func encodeIDs(_ text: String, addSpecialTokens: Bool) -> [Int32] {
        text.hasPrefix(" ") && text.count > 1
            ? ToyTokenizer().encodeIDs(String(text.dropFirst()), addSpecialTokens: false)
            : ToyTokenizer().encodeIDs(text, addSpecialTokens: addSpecialTokens)
    }
    var eosTokenID: Int32? { 0 }
    func renderChat(_ messages: [ChatMessage], addGenerationPrompt: Bool) throws -> String { "" }
}
