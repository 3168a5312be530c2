import Foundation
import QSTFormat

/// OpenAI's response documents for one completion: the whole answer, or server-sent-event chunks.
public struct OpenAIResponse: Sendable {
    public let id: String
    public let model: String
    public let created: Int
    /// Chat (`chat.completion`, messages and deltas) or plain (`text_completion`, text).
    public let chat: Bool

    public init(id: String, model: String, created: Int, chat: Bool) {
        self.id = id; self.model = model; self.created = created; self.chat = chat
    }

    static func num(_ n: Int) -> JSONValue { .number(String(n)) }

    static func usage(prompt: Int, completion: Int) -> JSONValue {
        .object(
            [
                ("prompt_tokens", num(prompt)), ("completion_tokens", num(completion)),
                ("total_tokens", num(prompt + completion)),
            ].map { (key: $0.0, value: $0.1) })
    }

    private func document(object: String, choices: [JSONValue], usage: JSONValue?) -> JSONValue {
        var fields: [(String, JSONValue)] = [
            ("id", .string(id)), ("object", .string(object)), ("created", Self.num(created)),
            ("model", .string(model)), ("choices", .array(choices)),
        ]
        if let usage { fields.append(("usage", usage)) }
        return .object(fields.map { (key: $0.0, value: $0.1) })
    }

    private static func obj(_ f: [(String, JSONValue)]) -> JSONValue { .object(f.map { (key: $0.0, value: $0.1) }) }

    /// The complete answer of a non-streamed request.
    public func complete(text: String, finishReason: String, promptTokens: Int, completionTokens: Int) -> Data {
        let choice: JSONValue =
            chat
            ? Self.obj([
                ("index", Self.num(0)),
                ("message", Self.obj([("role", .string("assistant")), ("content", .string(text))])),
                ("logprobs", .null), ("finish_reason", .string(finishReason)),
            ])
            : Self.obj([
                ("index", Self.num(0)), ("text", .string(text)), ("logprobs", .null),
                ("finish_reason", .string(finishReason)),
            ])
        return JSONText.encode(
            document(
                object: chat ? "chat.completion" : "text_completion", choices: [choice],
                usage: Self.usage(prompt: promptTokens, completion: completionTokens)))
    }

    /// One SSE event `data: {chunk}\n\n`: a piece of text (or, for chat, the first chunk's role), or the last
    /// chunk with its finish reason; `usage` alone gives the usage chunk (empty choices).
    public func chunk(
        text: String? = nil, role: Bool = false, finishReason: String? = nil,
        usage: (prompt: Int, completion: Int)? = nil
    ) -> Data {
        let object = chat ? "chat.completion.chunk" : "text_completion"
        let doc: JSONValue
        if let usage {
            doc = document(
                object: object, choices: [], usage: Self.usage(prompt: usage.prompt, completion: usage.completion))
        } else {
            let finish: JSONValue = finishReason.map { .string($0) } ?? .null
            let choice: JSONValue
            if chat {
                var delta: [(String, JSONValue)] = []
                if role { delta.append(("role", .string("assistant"))) }
                if let text { delta.append(("content", .string(text))) }
                choice = Self.obj([
                    ("index", Self.num(0)), ("delta", Self.obj(delta)), ("logprobs", .null),
                    ("finish_reason", finish),
                ])
            } else {
                choice = Self.obj([
                    ("index", Self.num(0)), ("text", .string(text ?? "")), ("logprobs", .null),
                    ("finish_reason", finish),
                ])
            }
            doc = document(object: object, choices: [choice], usage: nil)
        }
        return Data(("data: " + JSONText.string(doc) + "\n\n").utf8)
    }

    public static let done = Data("data: [DONE]\n\n".utf8)

    /// An error inside a stream that already started (status already sent): an SSE event with the error.
    public static func streamError(_ e: APIError) -> Data {
        Data("data: ".utf8) + e.json + Data("\n\n".utf8)
    }
}
