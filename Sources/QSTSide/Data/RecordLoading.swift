import Foundation
import QSTFormat
import QSTTokenizer

/// Text records for causal-LM tuning, one JSON object per line (JSONL) or a JSON array of them:
/// - `{"text": …}`: loss on every token;
/// - `{"prompt": …, "completion": …}`: loss on the completion (and EOS) only;
/// - `{"messages": [{"role": …, "content": …}, …]}`: the chat template, loss on assistant turns;
/// - Alpaca `{"instruction": …, "input": …, "output": …}`: a user turn and an assistant turn.
public enum RecordLoading {
    public static func load(
        path: String, tokenizer tok: ExampleTokenizer, maxLength: Int,
        skipBad: Bool
    ) throws -> LoadedExamples {
        guard let data = FileManager.default.contents(atPath: path) else { throw QSTError.file(path, "cannot read") }
        var records: [(line: Int, value: JSONValue?, error: String?)] = []
        let firstByte = data.first(where: { ![0x20, 0x09, 0x0A, 0x0D].contains($0) })
        if firstByte == UInt8(ascii: "[") {
            // A JSON array (Alpaca style): records are numbered by their index, lines are not tracked.
            let doc = try JSONValue.parse([UInt8](data), context: path)
            for (i, v) in (doc.arrayValue ?? []).enumerated() { records.append((i + 1, v, nil)) }
        } else {
            var lineNo = 0
            for line in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
                lineNo += 1
                let bytes = [UInt8](line)
                if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
                do { records.append((lineNo, try JSONValue.parse(bytes, context: path), nil)) } catch {
                    records.append((lineNo, nil, "not valid JSON (\(error))"))
                }
            }
        }
        var out = LoadedExamples(examples: [], skippedBad: 0, truncated: 0, droppedTooLong: 0, labelTokens: nil)
        let unit = firstByte == UInt8(ascii: "[") ? "record" : "line"
        for r in records {
            do {
                guard let v = r.value else { throw QSTError(r.error ?? "unreadable") }
                var ex = try example(v, tokenizer: tok)
                guard ex.labelledCount > 0 else {
                    throw QSTError("nothing to train on (empty completion or no assistant turn)")
                }
                if ex.truncate(to: maxLength) {
                    out.truncated += 1
                    // A prompt longer than the limit leaves nothing to learn from: dropped, and counted.
                    if ex.labelledCount == 0 { out.droppedTooLong += 1; continue }
                }
                out.examples.append(ex)
            } catch {
                if skipBad { out.skippedBad += 1; continue }
                let msg = (error as? QSTError)?.message ?? "\(error)"
                throw QSTError.file(path, "\(unit) \(r.line): \(msg) (use --skip-bad to skip such records)")
            }
        }
        return out
    }

    static func string(_ v: JSONValue, _ key: String) throws -> String? {
        guard let f = v[key] else { return nil }
        guard let s = f.stringValue else { throw QSTError("field '\(key)' must be a string, not \(f.kindName)") }
        return s
    }

    static func example(_ v: JSONValue, tokenizer tok: ExampleTokenizer) throws -> TrainingExample {
        guard v.objectValue != nil else { throw QSTError("a record must be a JSON object, not \(v.kindName)") }
        let eos = tok.eosTokenID.map { [$0] } ?? []
        if let messages = v["messages"] {
            guard let list = messages.arrayValue, !list.isEmpty else {
                throw QSTError("'messages' must be a non-empty array")
            }
            let chat = try list.enumerated().map { (i, m) -> ChatMessage in
                guard let role = try string(m, "role"), let content = try string(m, "content") else {
                    throw QSTError("messages[\(i)] needs string fields 'role' and 'content'")
                }
                return ChatMessage(role: role, content: content)
            }
            return try chatExample(chat, tokenizer: tok)
        }
        if let instruction = try string(v, "instruction"), let output = try string(v, "output") {
            let input = try string(v, "input") ?? ""
            let user = input.isEmpty ? instruction : instruction + "\n\n" + input
            return try chatExample(
                [ChatMessage(role: "user", content: user), ChatMessage(role: "assistant", content: output)],
                tokenizer: tok)
        }
        if let prompt = try string(v, "prompt") {
            guard let completion = try string(v, "completion") else { throw QSTError("'prompt' without 'completion'") }
            return TrainingExample.fromSegments([
                (tok.encodeIDs(prompt, addSpecialTokens: true), false),
                (tok.encodeIDs(completion, addSpecialTokens: false) + eos, true),
            ])
        }
        if let text = try string(v, "text") {
            return TrainingExample.fromSegments([(tok.encodeIDs(text, addSpecialTokens: true) + eos, true)])
        }
        throw QSTError("record has none of 'text', 'prompt'/'completion', 'messages', 'instruction'/'output'")
    }

    /// Chat template rendering with the assistant turns (and their end tokens) trained, the rest context.
    /// Each turn's text is the difference between renderings with and without it.
    static func chatExample(_ messages: [ChatMessage], tokenizer tok: ExampleTokenizer) throws -> TrainingExample {
        var segments: [(ids: [Int32], trained: Bool)] = []
        var done = ""
        for (k, m) in messages.enumerated() where m.role == "assistant" {
            let prefix = try tok.renderChat(Array(messages[..<k]), addGenerationPrompt: true)
            let through = try tok.renderChat(Array(messages[...k]), addGenerationPrompt: false)
            guard prefix.hasPrefix(done), through.hasPrefix(prefix) else {
                throw QSTError("the chat template does not render turn \(k) as an extension of the earlier turns")
            }
            segments.append(
                (tok.encodeIDs(String(prefix.dropFirst(done.count)), addSpecialTokens: done.isEmpty), false))
            segments.append((tok.encodeIDs(String(through.dropFirst(prefix.count)), addSpecialTokens: false), true))
            done = through
        }
        let all = try tok.renderChat(messages, addGenerationPrompt: false)
        if all.hasPrefix(done), all.count > done.count {
            segments.append((tok.encodeIDs(String(all.dropFirst(done.count)), addSpecialTokens: done.isEmpty), false))
        }
        return TrainingExample.fromSegments(segments)
    }
}
