import ArgumentParser
import Foundation
import QSTCLI
import QSTEngine
import QSTEngineCLI
import QSTEvaluation
import QSTNN
import QSTSide

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qst-eval",
        abstract: "Evaluate a frozen model: perplexity, closeness to a reference model, multiple-choice accuracy.",
        discussion: """
            MODEL is a .qst4 container or a Hugging Face safetensors folder. ppl and bench take --side (an adapter folder from qst-export, or a side folder; repeat for several, all evaluated against the same base pass); compare, choice and glue take one; choice and glue take a LoRA adapter instead (--lora); states reads the base alone. A merged container from qst-export --merge carries its own side network.

            --json prints one JSON document per run (ppl: with per-window numbers).

            Examples:
              qst-eval ppl smollm2.qst4 --text wiki.test.raw --ctx 512
              qst-eval ppl smollm2.qst4 --text wiki.test.raw --ctx 512 --stride 256 \\
                  --batch 2 --json
              qst-eval compare smollm2.qst4 --against ~/models/SmolLM2-135M-Instruct \\
                  --text wiki.test.raw --max-tokens 8192
              qst-eval choice smollm2.qst4 --mmlu data/mmlu --shots 5 \\
                  --subjects anatomy astronomy --limit 20
              qst-eval ppl smollm2.qst4 --side adapter/ --side other/ --text wiki.test.raw
              qst-eval compare smollm2.qst4 --side adapter/ \\
                  --against ~/models/SmolLM2-135M-Instruct --text wiki.test.raw
              qst-eval choice smollm2.qst4 --side adapter/ --mmlu data/mmlu --shots 5
              qst-eval choice smollm2.qst4 --lora lora-run/best --mmlu data/mmlu --shots 5
              # generation speed with and without the side network:
              qst-eval bench smollm2.qst4 --side adapter/ --generate 128
              # F1 and accuracy on a GLUE dev set:
              qst-eval glue smollm2.qst4 --task mrpc --data mrpc/dev.tsv --side adapter/
              # the frozen model's per-layer states of a GLUE file, for linear probes:
              qst-eval states smollm2.qst4 --task sst2 --data sst2/dev.tsv --out states-dev
            """,
        subcommands: [
            PerplexityCommand.self, CompareCommand.self, ChoiceCommand.self, BenchCommand.self, GLUECommand.self,
            StatesCommand.self,
        ])
}

/// Loads and tokenizes a text file, optionally keeping only the first `maxTokens` tokens.
func tokenize(file: String, model: FrozenModel, maxTokens: Int?) throws -> [Int32] {
    guard let data = FileManager.default.contents(atPath: file) else {
        throw QSTError("\(file): cannot read the text file", kind: .unreadableFile)
    }
    let tok = try model.source.loadTokenizer()
    var ids = tok.encode(String(decoding: data, as: UTF8.self)).map(Int32.init)
    if let m = maxTokens, m > 0, ids.count > m { ids = Array(ids.prefix(m)) }
    return ids
}

struct PerplexityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ppl", abstract: "Perplexity of a text file (strided windows).")
    @OptionGroup var base: ModelArgument
    @Option(help: "Text file to score.") var text: String
    @Option(help: "Window length in tokens.") var ctx: Int = 512
    @Option(help: "Distance between window starts (default: ctx, i.e. no overlap).") var stride: Int?
    @Option(help: "Windows per forward.") var batch: Int = 1
    @Option(help: "Score only the first N tokens of the text.") var maxTokens: Int?
    @OptionGroup var format: OutputFormat
    @Option(name: .customLong("side"), help: "A side network folder to evaluate beside the model; repeat for several.")
    var sides: [String] = []
    @OptionGroup var engine: EngineArguments

    func run() throws {
        let model = base.model, json = format.json
        let spec = try TunedModelSpec.open(modelPath: model, sidePaths: sides, options: try engine.options())
        let m = spec.base
        let ids = try tokenize(file: text, model: m, maxTokens: maxTokens)
        if let tuned = try spec.tunedModel() {
            var bar: ProgressBar? = nil
            let r = try TunedPerplexity.evaluate(
                model: tuned, names: spec.names, tokens: ids, ctx: ctx, stride: stride,
                batch: batch
            ) { done, total in
                if bar == nil { bar = ProgressBar(total: total, label: "ppl") }
                bar?.update(done)
            }
            bar?.finish()
            if json {
                try JSONOutput.print(
                    TunedPerplexityReport(
                        model: model, text: text, ctx: ctx, stride: stride ?? ctx, batch: batch,
                        sides: r.results, seconds: r.seconds, tokensPerSecond: r.tokensPerSecond,
                        memory: MemoryStats.current()))
                return
            }
            for s in r.results {
                print(
                    String(
                        format: "%@: perplexity %.4f  (mean NLL %.5f over %ld tokens)", s.side, s.perplexity, s.meanNLL,
                        s.scored))
            }
            print(
                String(
                    format: "%.1f tokens/s, %.1f s, peak RSS %@", r.tokensPerSecond, r.seconds,
                    Units.bytes(MemoryStats.current().peakRSS)))
            return
        }
        var shown: ProgressBar? = nil
        let r = try Perplexity.evaluate(model: m, tokens: ids, ctx: ctx, stride: stride, batch: batch) { done, total in
            if shown == nil { shown = ProgressBar(total: total, label: "ppl") }
            shown?.update(done)
        }
        shown?.finish()
        if json {
            try JSONOutput.print(
                PerplexityReport(
                    model: model, text: text, ctx: ctx, stride: stride ?? ctx, batch: batch,
                    result: r, memory: MemoryStats.current()))
        } else {
            print(
                String(
                    format: "perplexity %.4f  (mean NLL %.5f over %ld tokens, %ld windows)", r.perplexity, r.meanNLL,
                    r.scored, r.windows.count))
            print(
                String(
                    format: "%.1f tokens/s, %.1f s, peak RSS %@", r.tokensPerSecond, r.seconds,
                    Units.bytes(MemoryStats.current().peakRSS)))
        }
    }
}

struct TunedPerplexityReport: Encodable {
    var model: String, text: String, ctx: Int, stride: Int, batch: Int
    var sides: [TunedPerplexityResult]
    var seconds: Double, tokensPerSecond: Double
    var memory: MemoryStats
}

struct PerplexityReport: Encodable {
    var model: String, text: String, ctx: Int, stride: Int, batch: Int
    var result: PerplexityResult
    var memory: MemoryStats
}

struct CompareCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Mean KL divergence and top-1 agreement of next-token distributions against a reference model.")
    @OptionGroup var base: ModelArgument
    @Option(help: "The reference model (usually the unquantized safetensors folder).") var against: String
    @Option(help: "Text file (default: a built-in sample of plain English).") var text: String?
    @Option(help: "Window length in tokens.") var ctx: Int = 512
    @Option(help: "Compare only the first N tokens of the text.") var maxTokens: Int = 4096
    @OptionGroup var format: OutputFormat
    @Option(name: .customLong("side"), help: "A side network folder: compare the base with it (not the base alone).")
    var sides: [String] = []
    @OptionGroup var engine: EngineArguments

    func run() throws {
        let model = base.model, json = format.json
        let options = try engine.options()
        let spec = try TunedModelSpec.open(modelPath: model, sidePaths: sides, options: options)
        let m = spec.base, headInputs = try spec.singleSideHeadInputs(command: "compare")
        let ref = try FrozenModel(
            path: against,
            options: EngineOptions(
                matmulPath: .kernelsExact,
                residentBudgetMB: options.residentBudgetMB))
        let ids: [Int32]
        if let text {
            ids = try tokenize(file: text, model: m, maxTokens: maxTokens)
        } else {
            ids = try m.source.loadTokenizer().encode(CompareCommand.sample).map(Int32.init)
        }
        var bar: ProgressBar? = nil
        let r = try ModelComparison.evaluate(
            model: m, reference: ref, tokens: ids, ctx: ctx,
            headInputs: headInputs
        ) { done, total in
            if bar == nil { bar = ProgressBar(total: total, label: "compare") }
            bar?.update(done)
        }
        bar?.finish()
        if json {
            try JSONOutput.print(r)
        } else {
            print(
                String(
                    format: "mean KL %.5f nats, top-1 agreement %.2f%% over %ld positions", r.meanKL,
                    100 * r.top1Agreement, r.positions))
            print(
                String(
                    format: "perplexity %.4f (model) vs %.4f (reference), %.1f s", r.perplexity,
                    r.referencePerplexity, r.seconds))
        }
    }

    static let sample = """
        The history of the printing press begins in the fifteenth century, when Johannes Gutenberg combined \
        movable metal type, oil-based ink and a wooden press adapted from those used for wine. Books, which had \
        been copied by hand, could now be produced in hundreds of identical copies, and within fifty years \
        printing shops had spread to more than two hundred cities across Europe. The effects were profound: \
        literacy rose, scientific results could be shared and checked, and new ideas travelled faster than ever.
        """
}

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract:
            "Prompt-processing and generation speed (min/median of repeats) with an sgemm yardstick on the same shapes."
    )
    @OptionGroup var base: ModelArgument
    @Option(help: "Prompt tokens per pp run.") var prompt: Int = 512
    @Option(help: "Generated tokens per tg run.") var generate: Int = 128
    @Option(help: "Timed repeats (after one untimed prompt run and decoding step, as llama-bench warms up).")
    var repeats: Int = 3
    @OptionGroup var format: OutputFormat
    @Option(
        name: .customLong("side"), help: "Also generate with this side network beside the model and compare speeds.")
    var sides: [String] = []
    @OptionGroup var engine: EngineArguments

    struct Report: Encodable {
        var model: String
        var matmul: String
        var threads: Int
        var result: ForwardBenchmark.Result
        var memory: MemoryStats
        var cpu: String
        var promptPaths: String
        var generationPaths: String
    }

    func run() throws {
        let model = base.model, json = format.json
        guard prompt > 0, generate > 0, repeats > 0 else {
            throw QSTError.option("--prompt, --generate and --repeats must be positive")
        }
        let options = try engine.options()
        let spec = try TunedModelSpec.open(modelPath: model, sidePaths: sides, options: options)
        if let tuned = try spec.tunedModel() {
            let r = try TunedBenchmark.run(model: tuned, promptTokens: prompt, generate: generate, repeats: repeats)
            if json { try JSONOutput.print(r); return }
            print(
                String(
                    format: "tg%ld without side network: %.1f tok/s best, %.1f median", generate, r.baseBest,
                    r.baseMedian))
            print(
                String(
                    format: "tg%ld with %ld side network%@: %.1f tok/s best, %.1f median (%.2fx)", generate, r.sides,
                    r.sides == 1 ? "" : "s", r.tunedBest, r.tunedMedian, r.ratio))
            print(
                String(
                    format: "process CPU time per run, with ÷ without: %.3f; prefill %.1f vs %.1f tok/s (medians)",
                    r.cpuRatio, TunedBenchmark.median(r.tunedPrefill), TunedBenchmark.median(r.basePrefill)))
            print("peak RSS \(Units.bytes(MemoryStats.current().peakRSS))")
            return
        }
        let m = spec.base
        var memory = MemoryStats.current()
        let r = try ForwardBenchmark(model: m).run(promptTokens: prompt, generatedTokens: generate, repeats: repeats) {
            memory = MemoryStats.current()
        }
        let report = Report(
            model: model, matmul: options.matmulPath.rawValue, threads: EngineThreads.blasThreads,
            result: r, memory: memory, cpu: CPUKernels.describe(),
            promptPaths: m.matmulRoutes(rows: prompt), generationPaths: m.matmulRoutes(rows: 1))
        if json { try JSONOutput.print(report); return }
        print("cpu: \(CPUKernels.describe()); matmul \(options.matmulPath.rawValue)")
        print("kernel paths: pp\(prompt) (\(m.matmulRoutes(rows: prompt))); tg (\(m.matmulRoutes(rows: 1)))")
        print(
            String(
                format: "pp%ld: %.1f tok/s best, %.1f median (%.1f GFLOP/s)", prompt, r.pp.bestTokensPerSecond,
                r.pp.medianTokensPerSecond, r.ppGFLOPS))
        print(
            String(
                format: "tg%ld: %.1f tok/s best, %.1f median", generate, r.tg.bestTokensPerSecond,
                r.tg.medianTokensPerSecond))
        for g in r.sgemm { print(String(format: "sgemm m=%ld n=%ld k=%ld: %.1f GFLOP/s", g.m, g.n, g.k, g.gflops)) }
        print("peak RSS during the model runs \(Units.bytes(report.memory.peakRSS))")
    }
}

extension TunedModelSpec {
    /// For commands that evaluate one model: the base with the one side network given (nil: the base alone).
    func singleTunedModel(command: String) throws -> TunedModel? {
        guard let tuned = try tunedModel() else { return nil }
        guard names.count == 1 else {
            throw QSTError.option(
                "\(command) evaluates one side network, got \(names.count): \(names.joined(separator: ", "))")
        }
        return tuned
    }

    /// The side network's head inputs for a whole sequence (nil: the base alone).
    func singleSideHeadInputs(command: String) throws -> (([Int32]) throws -> FloatBuffer)? {
        guard let tuned = try singleTunedModel(command: command) else { return nil }
        return { ids in try tuned.forward(ids: ids, batch: 1, newTokens: ids.count).heads[0] }
    }
}

ToolRunner.main(Eval.self)
