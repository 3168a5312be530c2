import ArgumentParser
import Foundation
import QSTCLI
import QSTCore
import QSTEngineCLI
import QSTEvaluation
import QSTSide

struct ChoiceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "choice",
        abstract: "MMLU-style accuracy: compares the logits of the answer letters A-D after \"Answer:\".")
    @OptionGroup var base: ModelArgument
    @Option(help: "MMLU folder with dev/ and test/ CSV files (header question,choice0..3,answer).") var mmlu: String
    @Option(help: "Few-shot examples from the dev split.") var shots: Int = 5
    @Option(parsing: .upToNextOption, help: "Subjects (default: all).") var subjects: [String] = []
    @Option(help: "At most N test questions per subject.") var limit: Int?
    @Option(help: "Longest prompt in tokens (shots are dropped to fit).") var ctx: Int = 2048
    @OptionGroup var format: OutputFormat
    @Option(name: .customLong("side"), help: "A side network folder: answer with the base and it (not the base alone).")
    var sides: [String] = []
    @Option(
        help: """
            A LoRA adapter folder (qst-tune --method lora: run/best, run/final) instead of a side network. LoRA has \
            no decoding cache, so every prompt runs whole (as --no-reuse-prefix).
            """)
    var lora: String?
    @Flag(
        inversion: .prefixedNo,
        help: """
            Run only the tokens after the prefix a prompt shares with the one before (a subject's shots), reusing \
            the earlier keys and values; --no-reuse-prefix runs every prompt whole.
            """)
    var reusePrefix = true
    @OptionGroup var engine: EngineArguments

    func run() throws {
        let model = base.model, json = format.json
        guard (0...5).contains(shots) else {
            throw QSTError.option("--shots must be 0...5 (the dev split has 5 per subject)")
        }
        guard ctx >= 1 else { throw QSTError.option("--ctx must be ≥ 1") }
        let spec = try TunedModelSpec.open(modelPath: model, sidePaths: sides, options: try engine.options())
        try spec.refuseSides(besideLoRA: lora, given: sides, model: model)
        let m = spec.base
        let scorer = try lora.map { dir -> PrefixReusingScorer in
            let adapted = try LoRAModel.load(adapter: dir, base: m)
            return PrefixReusingScorer(
                capacity: ctx, reuse: false, extend: { try adapted.lastHeadInput($0) }, truncate: { _ in })
        }
        let evaluator = try MultipleChoiceEvaluator(
            model: m, tokenizer: try m.source.loadTokenizer(), maxContext: ctx,
            scorer: try scorer ?? spec.singleSideScorer(command: "choice", capacity: ctx, reuse: reusePrefix))
        let all = try MMLUData.subjects(in: mmlu)
        let chosen = subjects.isEmpty ? all : subjects
        for s in chosen where !all.contains(s) {
            throw QSTError.option("--subjects: unknown subject '\(s)' in \(mmlu)/test")
        }
        var bar: ProgressBar? = nil
        var subjectIndex = 0, lastSubject = ""
        let r = try evaluator.evaluate(dir: mmlu, subjects: chosen, shots: shots, limit: limit) {
            subject, done, total in
            if subject != lastSubject {
                lastSubject = subject; subjectIndex += 1; bar?.finish()
                bar = ProgressBar(total: total, label: "\(subject) (\(subjectIndex)/\(chosen.count))")
            }
            bar?.update(done)
        }
        bar?.finish()
        if json {
            try JSONOutput.print(r)
        } else {
            for s in r.subjects {
                let name = s.subject.padding(toLength: max(40, s.subject.count), withPad: " ", startingAt: 0)
                print(name + String(format: " %5.1f%%  (%ld/%ld)", 100 * s.accuracy, s.correct, s.questions))
            }
            print(
                String(format: "accuracy %.2f%% over %ld questions (%.1f s)", 100 * r.accuracy, r.questions, r.seconds))
            print("prompt tokens: \(r.tokensRun) run, \(r.tokensReused) reused from the prompt before")
        }
    }
}

extension TunedModelSpec {
    /// `--lora` adapts the bare base: a side network beside it (`--side`, or the one a merged container
    /// carries) would be silently dropped, so it is refused.
    func refuseSides(besideLoRA lora: String?, given sidePaths: [String], model: String) throws {
        guard lora != nil, !sides.isEmpty else { return }
        if sides.count > sidePaths.count {
            throw QSTError.option(
                "--lora: \(model) is a merged container with its own side network; give the plain base instead")
        }
        throw QSTError.option("--lora and --side cannot be combined")
    }

    /// The prompt scorer of `choice`: the side network's head inputs, or the base alone when no side is given.
    func singleSideScorer(command: String, capacity: Int, reuse: Bool) throws -> PrefixReusingScorer {
        guard let tuned = try singleTunedModel(command: command) else {
            return PrefixReusingScorer(model: base, capacity: capacity, reuse: reuse)
        }
        let cache = try tuned.makeCache(batch: 1, capacity: capacity, routing: .shared, float32: true)
        let e = base.headInputSize
        return PrefixReusingScorer(
            capacity: capacity, reuse: reuse,
            extend: { ids in
                let step = try tuned.forward(ids: ids, batch: 1, newTokens: ids.count, cache: cache, lastOnly: true)
                return Array(UnsafeBufferPointer(start: step.heads[0].constPointer, count: e))
            },
            truncate: { try cache.truncate(to: $0) })
    }
}
