import Foundation

public struct ChatMessage: Sendable, Equatable {
    public var role: String
    public var content: String
    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }
}

/// A chat prompt format. Instead of interpreting Jinja, the chat template of
/// tokenizer_config.json is recognised by its characteristic markers and rendered by hand, the
/// way the reference templates of each family render (checked against jinja2 in the tests).
public struct ChatFormat: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable {
        case chatml, llama2, llama3, mistral
    }

    public let kind: Kind
    public let bosToken: String
    public let eosToken: String
    /// The system prompt a ChatML template inserts when the conversation has none (SmolLM2, Qwen).
    public let defaultSystemPrompt: String?

    static let overrideHint = "pass --chat-format chatml|llama2|llama3|mistral"

    /// Recognises a chat template.
    public init(template: String, bosToken: String, eosToken: String) throws {
        let kind: Kind
        if template.contains("<|im_start|>") {
            kind = .chatml
        } else if template.contains("<|start_header_id|>") {
            kind = .llama3
        } else if template.contains("<<SYS>>") {
            kind = .llama2
        } else if template.contains("[INST]") {
            kind = .mistral
        } else {
            throw QSTError.tokenizerField(
                "tokenizer_config.json", "chat_template",
                "not a recognised template (ChatML, Llama 2, Llama 3, Mistral); \(Self.overrideHint)",
                kind: .unknownChatFormat)
        }
        self.kind = kind
        self.bosToken = bosToken
        self.eosToken = eosToken
        defaultSystemPrompt = kind == .chatml ? Self.chatMLDefaultSystemPrompt(template) : nil
    }

    /// A format chosen by name, e.g. from `--chat-format`.
    public init(name: String, bosToken: String, eosToken: String, defaultSystemPrompt: String? = nil) throws {
        guard let kind = Kind(rawValue: name.lowercased()) else {
            throw QSTError(
                "--chat-format: unknown format '\(name)'; use chatml|llama2|llama3|mistral", kind: .unknownChatFormat)
        }
        self.kind = kind
        self.bosToken = bosToken
        self.eosToken = eosToken
        self.defaultSystemPrompt = kind == .chatml ? defaultSystemPrompt : nil
    }

    /// Tokens that end an assistant turn; generation stops at any of them (and at EOS).
    public var endTokens: [String] {
        switch kind {
        case .chatml: return ["<|im_end|>"]
        case .llama3: return ["<|eot_id|>", "<|end_of_text|>"]
        case .llama2, .mistral: return eosToken.isEmpty ? ["</s>"] : [eosToken]
        }
    }

    /// The prompt text. It contains special tokens as text (`<|im_start|>`, `<s>`), so encode it
    /// with `addSpecialTokens: false`.
    public func render(messages: [ChatMessage], addGenerationPrompt: Bool) -> String {
        switch kind {
        case .chatml: return renderChatML(messages, addGenerationPrompt)
        case .llama3: return renderLlama3(messages, addGenerationPrompt)
        case .llama2: return renderLlama2(messages)
        case .mistral: return renderMistral(messages)
        }
    }

    private func renderChatML(_ messages: [ChatMessage], _ generation: Bool) -> String {
        var out = ""
        if let system = defaultSystemPrompt, let first = messages.first, first.role != "system" {
            out += "<|im_start|>system\n\(system)<|im_end|>\n"
        }
        for m in messages { out += "<|im_start|>\(m.role)\n\(m.content)<|im_end|>\n" }
        if generation { out += "<|im_start|>assistant\n" }
        return out
    }

    private func renderLlama3(_ messages: [ChatMessage], _ generation: Bool) -> String {
        var out = bosToken
        for m in messages {
            out += "<|start_header_id|>\(m.role)<|end_header_id|>\n\n\(Self.trim(m.content))<|eot_id|>"
        }
        if generation { out += "<|start_header_id|>assistant<|end_header_id|>\n\n" }
        return out
    }

    private func renderLlama2(_ messages: [ChatMessage]) -> String {
        var rest = messages[...]
        var system: String?
        if let first = rest.first, first.role == "system" {
            system = first.content
            rest = rest.dropFirst()
        }
        var out = ""
        for (i, m) in rest.enumerated() {
            var content = m.content
            if i == 0, let system { content = "<<SYS>>\n\(system)\n<</SYS>>\n\n\(content)" }
            if m.role == "user" {
                out += "\(bosToken)[INST] \(Self.trim(content)) [/INST]"
            } else if m.role == "assistant" {
                out += " \(Self.trim(content)) \(eosToken)"
            }
        }
        return out
    }

    private func renderMistral(_ messages: [ChatMessage]) -> String {
        var rest = messages[...]
        var system: String?
        if let first = rest.first, first.role == "system" {
            system = first.content
            rest = rest.dropFirst()
        }
        var out = bosToken
        var firstUser = true
        for m in rest {
            if m.role == "user" {
                var content = m.content
                if firstUser, let system { content = "\(system)\n\n\(content)" }
                firstUser = false
                out += "[INST] \(content) [/INST]"
            } else if m.role == "assistant" {
                out += "\(m.content)\(eosToken)"
            }
        }
        return out
    }

    /// Python's `str.strip()`, which Jinja's `trim` and `.strip()` use.
    static func trim(_ s: String) -> String {
        let scalars = Array(s.unicodeScalars)
        var lo = 0
        var hi = scalars.count
        while lo < hi, scalars[lo].properties.isWhitespace || (0x1C...0x1F).contains(scalars[lo].value) { lo += 1 }
        while hi > lo, scalars[hi - 1].properties.isWhitespace || (0x1C...0x1F).contains(scalars[hi - 1].value) {
            hi -= 1
        }
        var out = String()
        out.unicodeScalars.append(contentsOf: scalars[lo..<hi])
        return out
    }

    /// The literal system prompt in `'<|im_start|>system\n...<|im_end|>'`, if the template has one.
    static func chatMLDefaultSystemPrompt(_ template: String) -> String? {
        let marker = "<|im_start|>system"
        var search = template.startIndex..<template.endIndex
        while let found = template.range(of: marker, range: search) {
            search = found.upperBound..<template.endIndex
            var rest = template[found.upperBound...]
            if rest.hasPrefix("\\n") {
                rest = rest.dropFirst(2)
            } else if rest.hasPrefix("\n") {
                rest = rest.dropFirst()
            } else {
                continue
            }
            guard let end = rest.range(of: "<|im_end|>") else { continue }
            let literal = rest[..<end.lowerBound]
            if literal.isEmpty || literal.contains(where: { "'\"{}+".contains($0) }) { continue }
            return literal.replacingOccurrences(of: "\\n", with: "\n")
        }
        return nil
    }
}
