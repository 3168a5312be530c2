import ArgumentParser
import Foundation
import QSTCLI
import QSTEngine
import QSTEngineCLI
import QSTNN
import QSTSide

/// `qst-eval glue`: a GLUE dev set through the base (+ a tuned side network), scored with the task's
/// official metric. A side network with a classification head predicts with it; otherwise the label
/// words' logits through the frozen LM head decide (the verbalizer qst-tune trains with by default).
struct GLUECommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "glue",
        abstract: "GLUE dev-set metrics: accuracy (SST-2, RTE), F1 and accuracy (MRPC), Matthews correlation (CoLA).",
        discussion: """
            Examples:
              # the frozen model, with label words:
              qst-eval glue smollm2.qst4 --task sst2 --data sst2/dev.tsv
              # tuned (with its classification head if it has one):
              qst-eval glue smollm2.qst4 --task mrpc --data mrpc/dev.tsv --side adapter/
              qst-eval glue smollm2.qst4 --task rte --data rte/dev.tsv --side run/best
              # LoRA adapters:
              qst-eval glue smollm2.qst4 --task rte --data rte/dev.tsv --lora lora-run/best
            """)
    @OptionGroup var base: ModelArgument
    @OptionGroup var file: GLUEFileArguments
    @Option(help: "Adapter folder from qst-export, or a side folder (run/best, run/final).") var side: String?
    @Option(help: "A LoRA adapter folder (qst-tune --method lora: run/best, run/final) instead of a side network.")
    var lora: String?
    @Option(help: "Sequences per forward.") var batch: Int = 16
    @OptionGroup var format: OutputFormat
    @OptionGroup var engine: EngineArguments

    struct Report: Encodable {
        var task: String
        var data: String
        var side: String?
        var mode: SequencePredictor.Mode
        var examples: Int
        var skippedBad: Int
        var metrics: [String: Double]
        var officialMetrics: [String]
        var predictedCounts: [Int]
        var goldCounts: [Int]
        var seconds: Double
        var peakRSS: Int
    }

    func run() throws {
        let model = base.model, json = format.json
        guard batch >= 1 else { throw QSTError.option("--batch must be ≥ 1") }
        let glue = try file.glueTask()
        let sidePaths = side.map { [$0] } ?? []
        let spec = try TunedModelSpec.open(modelPath: model, sidePaths: sidePaths, options: try engine.options())
        try spec.refuseSides(besideLoRA: lora, given: sidePaths, model: model)
        let sideModel = try spec.sides.last.map { try SideModel(weights: $0, backbone: spec.base) }
        let loraModel = try lora.map { try LoRAModel.load(adapter: $0, base: spec.base) }
        let useHead = sideModel?.classifierLabels != nil
        if let k = sideModel?.classifierLabels, k != glue.labelWords.count {
            throw QSTError(
                "\(side ?? model): the classification head has \(k) labels but task \(glue.name) has \(glue.labelWords.count)",
                kind: .incompatibleInputs)
        }
        let tokenizer = try spec.base.source.loadTokenizer()
        let loaded = try file.load(glue, tokenizer: tokenizer, head: useHead)
        let start = Date()
        let bar = ProgressBar(total: loaded.examples.count, label: glue.name)
        let head: (k: Int, logits: (FloatBuffer, [Int]) throws -> [Float])? = sideModel.flatMap { m in
            m.classifierLabels.map { k in (k, { try m.classifierLogits(hidden: $0, rows: $1) }) }
        }
        let result = try SequencePredictor.scores(
            backbone: spec.base,
            output: sideModel.map { m in { try m.outputHidden($0) } }
                ?? loraModel.map { m in { try m.outputHidden($0) } },
            head: head,
            examples: loaded.examples, labelTokens: useHead ? nil : try glue.labelTokens(tokenizer), batchSize: batch
        ) { bar.update($0) }
        bar.finish()
        let predicted = SequencePredictor.classes(result.scores)
        let gold = loaded.examples.map { $0.classLabel ?? -1 }
        var metrics = glue.metrics(predicted: predicted, gold: gold)
        metrics["accuracy"] = GLUEMetrics.accuracy(predicted: predicted, gold: gold)
        let k = glue.labelWords.count
        let report = Report(
            task: glue.name, data: file.data, side: side ?? lora, mode: result.mode, examples: gold.count,
            skippedBad: loaded.skippedBad, metrics: metrics, officialMetrics: glue.officialMetrics,
            predictedCounts: (0..<k).map { c in predicted.filter { $0 == c }.count },
            goldCounts: (0..<k).map { c in gold.filter { $0 == c }.count },
            seconds: Date().timeIntervalSince(start), peakRSS: MemoryStats.current().peakRSS)
        if json { try JSONOutput.print(report); return }
        let names = glue.officialMetrics + (glue.officialMetrics.contains("accuracy") ? [] : ["accuracy"])
        let shown = names.map { n in
            n == "matthews_correlation"
                ? String(format: "%@ %.4f", n, metrics[n] ?? 0)
                : String(format: "%@ %.2f%%", n, 100 * (metrics[n] ?? 0))
        }
        print("\(glue.name) (\(report.mode.rawValue)), \(report.examples) examples: " + shown.joined(separator: ", "))
        print(
            "predicted per class \(report.predictedCounts), gold \(report.goldCounts); "
                + String(format: "%.1f s, peak RSS ", report.seconds) + Units.bytes(report.peakRSS))
    }
}
