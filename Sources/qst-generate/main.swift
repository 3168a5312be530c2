import ArgumentParser
import Foundation
import QSTCLI
import QSTEngine
import QSTEngineCLI
import QSTSide
import QSTTokenizer

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qst-generate",
        abstract: "Generate text with a frozen model, streaming tokens as they come.",
        discussion: """
            MODEL is a .qst4 container or a Hugging Face safetensors folder with its tokenizer. Generation stops at the end-of-sequence token, the chat format's end token (--chat), or after --max-tokens. Temperature 0 is greedy decoding.

            --side adds a trained side network (an adapter folder from qst-export, or a side folder) beside the frozen model; a merged container from qst-export --merge carries its own. Several --side give one continuation each from one batched pass over the base.

            --json prints one document with the text, token ids and speed at the end instead of streaming.

            Examples:
              qst-generate smollm2.qst4 --prompt "The capital of France is" --max-tokens 20
              qst-generate smollm2.qst4 --chat --prompt "Write a haiku about autumn." \\
                  --temperature 0.7 --top-p 0.9 --seed 1
              qst-generate smollm2.qst4 --chat --system "Answer briefly." \\
                  --prompt "What is 2+2?" --json
              qst-generate smollm2.qst4 --side adapter/ --chat \\
                  --prompt "Review: a gem of a film. Sentiment:"
              qst-generate tuned.qst4 --chat --prompt "Hello"   # merged: base + side
              qst-generate smollm2.qst4 --side a/ --side b/ --prompt "Once upon a time"
            """)

    @OptionGroup var base: ModelArgument
    @Option(help: "The prompt text.") var prompt: String
    @Flag(help: "Wrap the prompt in the model's chat template as a user message.") var chat = false
    @Option(help: "System message for --chat.") var system: String?
    @Option(help: "Chat format override: chatml, llama2, llama3 or mistral.") var chatFormat: String?
    @Option(help: "Most new tokens to generate.") var maxTokens: Int = 128
    @Option(help: "Sampling temperature (0 = greedy).") var temperature: Float = 0
    @Option(help: "Nucleus sampling mass in (0, 1].") var topP: Float = 1
    @Option(help: "Random seed for sampling.") var seed: UInt64 = 0
    @OptionGroup var format: OutputFormat
    @Option(
        name: .customLong("side"),
        help: "A side network folder (qst-export adapter or side folder); repeat for several.")
    var sides: [String] = []
    @OptionGroup var engine: EngineArguments

    struct Report: Encodable {
        var side: String?
        var prompt: String
        var promptTokens: Int
        var text: String
        var tokens: [Int32]
        var stopReason: String
        var prefillTokensPerSecond: Double
        var decodeTokensPerSecond: Double
        var peakRSS: Int
        /// Private (anonymous) and file-backed (mapped weights, shared through the page cache) resident bytes.
        var rssAnon: Int? = nil
        var rssFile: Int? = nil
    }

    var json: Bool { format.json }

    func run() throws {
        guard maxTokens >= 0 else { throw QSTError.option("--max-tokens must be ≥ 0") }
        if system != nil && !chat { throw QSTError.option("--system needs --chat") }
        if chatFormat != nil && !chat { throw QSTError.option("--chat-format needs --chat") }
        let sampling = SamplingOptions(temperature: temperature, topP: topP, seed: seed)
        do { try sampling.validate() } catch { throw QSTError.option("\(error)") }
        let spec = try TunedModelSpec.open(modelPath: base.model, sidePaths: sides, options: try engine.options())
        let m = spec.base
        let tok = try m.source.loadTokenizer()
        var text = prompt
        var format: ChatFormat?
        if chat {
            let f = try tok.chatFormat(override: chatFormat)
            format = f
            var messages: [ChatMessage] = []
            if let system { messages.append(ChatMessage(role: "system", content: system)) }
            messages.append(ChatMessage(role: "user", content: prompt))
            text = f.render(messages: messages, addGenerationPrompt: true)
        }
        let ids = tok.encode(text, addSpecialTokens: !chat).map(Int32.init)
        var stops = Set(tok.stopTokenIDs(for: format).map(Int32.init))
        stops.formUnion(m.config.eosTokenIDs.map(Int32.init))
        if let tuned = try spec.tunedModel() {
            try runTuned(
                tuned, names: spec.names, tokenizer: tok, ids: ids, text: text, sampling: sampling, stops: stops)
            return
        }
        var stream = StreamingDecoder(tokenizer: tok)
        let r = try Generator(model: m).generate(
            prompt: ids, maxTokens: maxTokens, sampling: sampling,
            stopTokens: stops
        ) { id in
            if !json {
                FileHandle.standardOutput.write(Data(stream.push(Int(id)).utf8))
            }
            return true
        }
        if json {
            let generated = r.tokens.filter { !stops.contains($0) }.map(Int.init)
            try JSONOutput.print(
                Report(
                    side: nil, prompt: text, promptTokens: r.promptTokens,
                    text: tok.decode(generated, skipSpecialTokens: true), tokens: r.tokens,
                    stopReason: r.stopReason, prefillTokensPerSecond: r.prefillTokensPerSecond,
                    decodeTokensPerSecond: r.decodeTokensPerSecond, peakRSS: MemoryStats.current().peakRSS))
        } else {
            FileHandle.standardOutput.write(Data((stream.finish() + "\n").utf8))
            FileHandle.standardError.write(
                Data(
                    String(
                        format: "[%ld prompt tokens, %.1f tok/s prefill; %ld new tokens, %.1f tok/s; stop: %@]\n",
                        r.promptTokens, r.prefillTokensPerSecond, r.tokens.count, r.decodeTokensPerSecond, r.stopReason
                    ).utf8))
        }
    }
}

extension Generate {
    /// Generation with side networks: one side streams as it goes; several print one block each.
    func runTuned(
        _ tuned: TunedModel, names: [String], tokenizer tok: Tokenizer, ids: [Int32], text: String,
        sampling: SamplingOptions, stops: Set<Int32>
    ) throws {
        let single = names.count == 1
        var stream = StreamingDecoder(tokenizer: tok)
        let results = try TunedGenerator(model: tuned).generate(
            prompt: ids, maxTokens: maxTokens, sampling: sampling,
            stopTokens: stops
        ) { _, id in
            if single && !json { FileHandle.standardOutput.write(Data(stream.push(Int(id)).utf8)) }
            return true
        }
        let reports = zip(names, results).map { name, r in
            Report(
                side: name, prompt: text, promptTokens: r.promptTokens,
                text: tok.decode(r.tokens.filter { !stops.contains($0) }.map(Int.init), skipSpecialTokens: true),
                tokens: r.tokens, stopReason: r.stopReason, prefillTokensPerSecond: r.prefillTokensPerSecond,
                decodeTokensPerSecond: r.decodeTokensPerSecond, peakRSS: MemoryStats.current().peakRSS,
                rssAnon: MemoryStats.current().anonymous, rssFile: MemoryStats.current().fileBacked)
        }
        if json {
            if single { try JSONOutput.print(reports[0]) } else { try JSONOutput.print(reports) }
            return
        }
        if single {
            FileHandle.standardOutput.write(Data((stream.finish() + "\n").utf8))
        } else {
            for r in reports { print("== \(r.side ?? "side") ==\n\(r.text)") }
        }
        for r in reports {
            FileHandle.standardError.write(
                Data(
                    String(
                        format: "[%@: %ld prompt tokens, %.1f tok/s prefill; %ld new tokens, %.1f tok/s; stop: %@]\n",
                        r.side ?? "side", r.promptTokens, r.prefillTokensPerSecond, r.tokens.count,
                        r.decodeTokensPerSecond, r.stopReason
                    ).utf8))
        }
    }
}

ToolRunner.main(Generate.self)
