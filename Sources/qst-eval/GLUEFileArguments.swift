import ArgumentParser
import Foundation
import QSTCLI
import QSTSide

/// The options `qst-eval glue` and `qst-eval states` share: which GLUE task, which file of it, and how
/// its records are read into prompts.
struct GLUEFileArguments: ParsableArguments {
    @Option(help: "GLUE task: sst2, rte, mrpc or cola.") var task: String
    @Option(help: "The task's TSV file (dev.tsv to score, any split for states).") var data: String
    @Option(help: "Only the first N examples.") var limit: Int?
    @Option(help: "Longer prompts are cut from the front to this many tokens.") var maxLength: Int = 256
    @Flag(help: "Skip malformed records (counted) instead of stopping.") var skipBad = false

    /// The task, checked before any model is opened.
    func glueTask() throws -> GLUETask {
        guard maxLength >= 2 else { throw QSTError.option("--max-length must be ≥ 2") }
        if let limit, limit < 1 { throw QSTError.option("--limit must be ≥ 1") }
        return try GLUETask.named(task)
    }

    /// The file's examples, at least one (with `head`, the prompt alone, labelled with the class index).
    func load(_ glue: GLUETask, tokenizer: ExampleTokenizer, head: Bool) throws -> LoadedExamples {
        var loaded = try glue.load(path: data, tokenizer: tokenizer, maxLength: maxLength, skipBad: skipBad, head: head)
        if let limit { loaded.examples = Array(loaded.examples.prefix(limit)) }
        guard !loaded.examples.isEmpty else { throw QSTError("\(data): no examples", kind: .notEnoughData) }
        return loaded
    }
}
