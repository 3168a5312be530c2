import Foundation
import QSTFormat
import QSTTokenizer

/// An error answered in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}` with an HTTP status.
public struct APIError: Error, Equatable, CustomStringConvertible {
    public var status: Int
    public var message: String
    public var type: String
    public var param: String?
    public var code: String?

    public init(
        _ status: Int, _ message: String, type: String = "invalid_request_error", param: String? = nil,
        code: String? = nil
    ) {
        self.status = status; self.message = message; self.type = type; self.param = param; self.code = code
    }

    public var description: String { message }

    public var json: Data {
        var inner: [(String, JSONValue)] = [("message", .string(message)), ("type", .string(type))]
        inner.append(("param", param.map { .string($0) } ?? .null))
        inner.append(("code", code.map { .string($0) } ?? .null))
        return JSONText.encode(.object([("error", .object(inner.map { (key: $0.0, value: $0.1) }))]))
    }
}

/// A completion request's fields, checked: `/v1/chat/completions` (messages) or `/v1/completions` (prompt).
public struct CompletionParameters: Equatable {
    public enum Input: Equatable {
        case messages([ChatMessage])
        case prompt(String)
    }

    public var model: String
    public var input: Input
    public var maxTokens: Int?
    public var temperature: Float
    public var topP: Float
    public var stop: [String]
    public var seed: UInt64?
    public var stream: Bool
    public var includeUsageInStream: Bool
    /// Extension (as vLLM's and llama.cpp's): keep generating past EOS, for benchmarks of fixed length.
    public var ignoreEOS: Bool

    /// Parses and validates a body; every problem is a 400 naming the field.
    public static func parse(body: [UInt8], chat: Bool) throws -> CompletionParameters {
        let doc: JSONValue
        do { doc = try JSONValue.parse(body, context: "request body") } catch {
            throw APIError(400, "the request body is not valid JSON: \(error)")
        }
        guard doc.objectValue != nil else {
            throw APIError(400, "the request body must be a JSON object, got \(doc.kindName)")
        }
        func field<T>(_ name: String, _ what: String, _ get: (JSONValue) -> T?) throws -> T? {
            guard let v = doc[name], v != .null else { return nil }
            guard let t = get(v) else {
                throw APIError(400, "'\(name)' must be \(what), got \(v.kindName)", param: name)
            }
            return t
        }
        guard let model = try field("model", "a string", \.stringValue) else {
            throw APIError(400, "'model' is required", param: "model")
        }
        let input: Input
        if chat {
            guard let list = try field("messages", "an array", \.arrayValue), !list.isEmpty else {
                throw APIError(400, "'messages' is required: a non-empty array of {role, content}", param: "messages")
            }
            input = .messages(
                try list.enumerated().map { k, m in
                    guard let role = m["role"]?.stringValue, ["system", "user", "assistant"].contains(role) else {
                        throw APIError(400, "messages[\(k)].role must be system, user or assistant", param: "messages")
                    }
                    return ChatMessage(role: role, content: try content(m["content"], index: k))
                })
        } else {
            guard let v = doc["prompt"] else { throw APIError(400, "'prompt' is required", param: "prompt") }
            if let s = v.stringValue {
                input = .prompt(s)
            } else if let a = v.arrayValue, a.count == 1, let s = a[0].stringValue {
                input = .prompt(s)
            } else {
                throw APIError(400, "'prompt' must be a string (or an array of one string)", param: "prompt")
            }
        }
        let maxTokens =
            try field("max_tokens", "an integer", \.exactInt)
            ?? (try field("max_completion_tokens", "an integer", \.exactInt))
        if let m = maxTokens, m < 1 { throw APIError(400, "'max_tokens' must be ≥ 1, got \(m)", param: "max_tokens") }
        let temperature = try field("temperature", "a number", \.doubleValue) ?? 1
        guard temperature >= 0, temperature <= 2 else {
            throw APIError(400, "'temperature' must be in [0, 2], got \(temperature)", param: "temperature")
        }
        let topP = try field("top_p", "a number", \.doubleValue) ?? 1
        guard topP > 0, topP <= 1 else { throw APIError(400, "'top_p' must be in (0, 1], got \(topP)", param: "top_p") }
        var stop: [String] = []
        if let v = doc["stop"], v != .null {
            if let s = v.stringValue {
                stop = [s]
            } else if let a = v.arrayValue, a.count <= 4, let ss = Optional(a.compactMap(\.stringValue)),
                ss.count == a.count
            {
                stop = ss
            } else {
                throw APIError(400, "'stop' must be a string or an array of up to 4 strings", param: "stop")
            }
        }
        let seed = try field("seed", "an integer", \.exactInt)
        if let n = try field("n", "an integer", \.exactInt), n != 1 {
            throw APIError(400, "'n' must be 1 (one choice per request)", param: "n")
        }
        let stream =
            try field(
                "stream", "a boolean",
                {
                    if case .bool(let b) = $0 { return b }; return nil
                }) ?? false
        let usage =
            try doc["stream_options"].flatMap { o -> Bool? in
                guard o != .null else { return nil }
                guard o.objectValue != nil else {
                    throw APIError(400, "'stream_options' must be an object", param: "stream_options")
                }
                if case .bool(let b) = o["include_usage"] ?? .null { return b }
                return nil
            } ?? false
        let ignoreEOS =
            try field(
                "ignore_eos", "a boolean",
                {
                    if case .bool(let b) = $0 { return b }; return nil
                }) ?? false
        return CompletionParameters(
            model: model, input: input, maxTokens: maxTokens, temperature: Float(temperature),
            topP: Float(topP), stop: stop, seed: seed.map { UInt64(bitPattern: Int64($0)) },
            stream: stream, includeUsageInStream: usage, ignoreEOS: ignoreEOS)
    }

    /// A message's content: a string, or an array of `{type: "text", text}` parts.
    static func content(_ v: JSONValue?, index k: Int) throws -> String {
        if let s = v?.stringValue { return s }
        if let parts = v?.arrayValue {
            return try parts.map { p in
                guard p["type"]?.stringValue == "text", let t = p["text"]?.stringValue else {
                    throw APIError(400, "messages[\(k)].content: only text parts are supported", param: "messages")
                }
                return t
            }.joined()
        }
        throw APIError(400, "messages[\(k)].content must be a string", param: "messages")
    }
}

/// JSON text of a `JSONValue` (compact, strings escaped as JSON requires).
public enum JSONText {
    public static func encode(_ v: JSONValue) -> Data { Data(string(v).utf8) }

    /// An object from (key, value) pairs in order.
    public static func object(_ fields: [(String, JSONValue)]) -> JSONValue {
        .object(fields.map { (key: $0.0, value: $0.1) })
    }

    public static func number(_ n: Int) -> JSONValue { .number(String(n)) }

    public static func string(_ v: JSONValue) -> String {
        switch v {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .number(let t): return t
        case .string(let s): return JSONValue.quoted(s)
        case .array(let a): return "[" + a.map(string).joined(separator: ",") + "]"
        case .object(let o):
            return "{" + o.map { JSONValue.quoted($0.key) + ":" + string($0.value) }.joined(separator: ",") + "}"
        }
    }
}
