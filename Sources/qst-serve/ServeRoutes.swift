import Foundation
import NIOHTTP1
import QSTEngine
import QSTFormat
import QSTServe
import QSTSide
import QSTTokenizer

/// The endpoints: OpenAI's models, chat completions and completions; health; the admin endpoint that adds
/// and removes side networks. Runs on the connections' event loop; generation runs on the scheduler's thread.
final class ServeRoutes: @unchecked Sendable {
    let scheduler: BatchScheduler
    let registry: SideRegistry
    let tokenizer: Tokenizer
    let chatFormat: ChatFormat?
    let chatFormatError: String?
    let apiKey: String?
    let modelPath: String
    let baseIdentity: BaseIdentity
    let defaultMaxTokens: Int
    private let lock = NSLock()
    private var counter = 0

    init(
        scheduler: BatchScheduler, registry: SideRegistry, tokenizer: Tokenizer, chatFormat: ChatFormat?,
        chatFormatError: String?, apiKey: String?, modelPath: String, baseIdentity: BaseIdentity, defaultMaxTokens: Int
    ) {
        self.scheduler = scheduler; self.registry = registry; self.tokenizer = tokenizer; self.chatFormat = chatFormat
        self.chatFormatError = chatFormatError; self.apiKey = apiKey; self.modelPath = modelPath
        self.baseIdentity = baseIdentity; self.defaultMaxTokens = defaultMaxTokens
    }

    func handle(_ r: HTTPRequest, on h: HTTPHandler) {
        if let key = apiKey, r.path != "/health", r.headers.first(name: "authorization") != "Bearer \(key)" {
            return h.respond(
                APIError(401, "missing or wrong API key (Authorization: Bearer KEY)", code: "invalid_api_key"))
        }
        do {
            switch (r.method, r.path) {
            case (.GET, "/health"): h.respond(status: 200, json: health())
            case (.GET, "/v1/models"): h.respond(status: 200, json: models())
            case (.POST, "/v1/chat/completions"): try complete(r, chat: true, on: h)
            case (.POST, "/v1/completions"): try complete(r, chat: false, on: h)
            case (.POST, "/admin/sides"): try addSide(r, on: h)
            case (.DELETE, _) where r.path.hasPrefix("/admin/sides/"):
                let name = String(r.path.dropFirst("/admin/sides/".count)).removingPercentEncoding ?? ""
                guard registry.remove(name: name) else {
                    throw APIError(404, "no side network named '\(name)'", code: "model_not_found")
                }
                h.respond(status: 200, json: JSONText.encode(.object([(key: "deleted", value: .string(name))])))
            case (_, "/health"), (_, "/v1/models"), (_, "/v1/chat/completions"), (_, "/v1/completions"),
                (_, "/admin/sides"):
                throw APIError(405, "\(r.method) is not allowed on \(r.path)")
            default: throw APIError(404, "no endpoint \(r.method) \(r.path)")
            }
        } catch let e as APIError {
            h.respond(e)
        } catch {
            h.respond(APIError(500, "\(error)", type: "server_error"))
        }
    }

    func health() -> Data {
        let s = scheduler.stats, n = JSONText.number
        return JSONText.encode(
            JSONText.object([
                ("status", .string("ok")), ("models", n(registry.names.count)), ("active", n(s.active)),
                ("queued", n(s.queued)),
                ("steps", n(s.steps)), ("completed", n(s.completed)), ("cancelled", n(s.cancelled)),
                ("generated_tokens", n(s.generatedTokens)), ("prefill_tokens", n(s.prefillTokens)),
            ]))
    }

    func models() -> Data {
        let data: [JSONValue] = registry.names.map { name in
            JSONText.object([
                ("id", .string(name)), ("object", .string("model")), ("created", .number("0")),
                ("owned_by", .string(name == registry.baseName ? "qst" : "qst-side")),
            ])
        }
        return JSONText.encode(JSONText.object([("object", .string("list")), ("data", .array(data))]))
    }

    func complete(_ r: HTTPRequest, chat: Bool, on h: HTTPHandler) throws {
        let p = try CompletionParameters.parse(body: r.body, chat: chat)
        guard let side = registry.lookup(p.model) else {
            throw APIError(
                404, "the model '\(p.model)' does not exist; GET /v1/models lists them", param: "model",
                code: "model_not_found")
        }
        var format: ChatFormat?
        let ids: [Int]
        switch p.input {
        case .messages(let messages):
            guard let f = chatFormat else {
                throw APIError(400, "the model has no chat template: \(chatFormatError ?? "")")
            }
            format = f
            ids = tokenizer.encode(f.render(messages: messages, addGenerationPrompt: true), addSpecialTokens: false)
        case .prompt(let text):
            ids = tokenizer.encode(text, addSpecialTokens: true)
        }
        let context = scheduler.limits.context
        guard ids.count < context else {
            throw APIError(
                400, "the prompt has \(ids.count) tokens but the context holds \(context)", param: "messages",
                code: "context_length_exceeded")
        }
        var stops = Set(tokenizer.stopTokenIDs(for: format).map(Int32.init))
        stops.formUnion(scheduler.base.config.eosTokenIDs.map(Int32.init))
        if p.ignoreEOS { stops = [] }
        let request = GenerationRequest(
            prompt: ids.map(Int32.init), maxTokens: min(p.maxTokens ?? defaultMaxTokens, context - ids.count),
            sampling: SamplingOptions(
                temperature: p.temperature, topP: p.topP, seed: p.seed ?? UInt64.random(in: 0...UInt64.max)),
            stopStrings: p.stop, stopTokens: stops)
        let id = lock.withLock {
            counter += 1; return counter
        }
        let shape = OpenAIResponse(
            id: (chat ? "chatcmpl-" : "cmpl-") + String(id), model: p.model,
            created: Int(Date().timeIntervalSince1970), chat: chat)
        let responder = CompletionResponder(
            shape: shape, stream: p.stream, includeUsage: p.includeUsageInStream,
            writer: h.writer())
        do {
            h.running = try scheduler.submit(request, side: side) { responder.handle($0) }
        } catch let e as SubmitError {
            switch e {
            case .queueFull: throw APIError(429, e.description, type: "rate_limit_error", code: "rate_limit_exceeded")
            case .shuttingDown: throw APIError(503, e.description, type: "server_error")
            case .promptTooLong, .emptyPrompt: throw APIError(400, e.description)
            }
        }
        if p.stream { h.start(status: 200, contentType: "text/event-stream", length: nil) }
    }

    /// `POST /admin/sides {"name", "path"}`: loads and checks the folder off the event loop, then registers it.
    func addSide(_ r: HTTPRequest, on h: HTTPHandler) throws {
        let doc: JSONValue
        do { doc = try JSONValue.parse(r.body, context: "request body") } catch {
            throw APIError(400, "the request body is not valid JSON: \(error)")
        }
        guard let name = doc["name"]?.stringValue, !name.isEmpty, let path = doc["path"]?.stringValue else {
            throw APIError(400, "expected {\"name\": NAME, \"path\": FOLDER}")
        }
        guard name != registry.baseName else {
            throw APIError(400, "'\(name)' is the base model's name", param: "name")
        }
        let writer = h.writer()
        DispatchQueue.global().async { [self] in
            do {
                let w = try TunedModelSpec.loadSide(path: path, baseIdentity: baseIdentity, modelPath: modelPath)
                try TunedModel.validate(side: w, base: scheduler.base)
                registry.add(name: name, weights: w)
                writer.respond(
                    status: 200,
                    json: JSONText.encode(
                        .object([
                            (key: "name", value: .string(name)),
                            (key: "path", value: .string(path)),
                        ])))
            } catch {
                writer.respond(
                    status: 400, json: APIError(400, "cannot load side network '\(name)': \(error)", param: "path").json
                )
            }
        }
    }
}

/// Turns one request's generation events into its HTTP answer: one JSON document, or SSE chunks ending
/// `data: [DONE]`. Events arrive in order on the scheduler's thread.
final class CompletionResponder: @unchecked Sendable {
    let shape: OpenAIResponse
    let stream: Bool
    let includeUsage: Bool
    let writer: ResponseWriter
    private var text = ""
    private var sentRole = false

    init(shape: OpenAIResponse, stream: Bool, includeUsage: Bool, writer: ResponseWriter) {
        self.shape = shape; self.stream = stream; self.includeUsage = includeUsage; self.writer = writer
    }

    func handle(_ event: GenerationEvent) {
        switch event {
        case .text(let piece):
            if !stream { text += piece; return }
            if shape.chat && !sentRole { sentRole = true; writer.send(shape.chunk(text: "", role: true)) }
            writer.send(shape.chunk(text: piece))
        case let .finished(reason, prompt, completion):
            guard stream else {
                writer.respond(
                    status: 200,
                    json: shape.complete(
                        text: text, finishReason: reason, promptTokens: prompt,
                        completionTokens: completion))
                return
            }
            if shape.chat && !sentRole { writer.send(shape.chunk(text: "", role: true)) }
            writer.send(shape.chunk(finishReason: reason))
            if includeUsage { writer.send(shape.chunk(usage: (prompt, completion))) }
            writer.send(OpenAIResponse.done)
            writer.end()
        case .failed(let message):
            let e = APIError(503, message, type: "server_error")
            if stream {
                writer.send(OpenAIResponse.streamError(e)); writer.end()
            } else {
                writer.respond(status: 503, json: e.json)
            }
        }
    }
}
