import ArgumentParser
import Dispatch
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import QSTCLI
import QSTEngine
import QSTEngineCLI
import QSTServe
import QSTSide
import QSTTokenizer

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qst-serve",
        abstract: "Serve a frozen model and its side networks over an OpenAI-compatible HTTP API.",
        discussion: """
            Endpoints: GET /v1/models, POST /v1/chat/completions, POST /v1/completions (stream: true gives \
            server-sent events), GET /health, POST /admin/sides {"name", "path"} and DELETE /admin/sides/NAME \
            to add and remove side networks while serving.

            The request's "model" picks the base (its name is --name, default the file name) or a side \
            network by its NAME. Concurrent requests are decoded together, whatever side network each uses: \
            one base forward per step serves all of them (continuous batching; long prompts are prefilled \
            --prefill-chunk tokens per step).

            Without --api-key the server only listens on a loopback address.

            Examples:
              qst-serve smollm2.qst4
              qst-serve smollm2.qst4 --side sst2=runs/sst2/adapter \\
                  --side qa=runs/qa/adapter --port 8080
              # a merged container: its side network is "tuned#side"
              qst-serve tuned.qst4 --name tuned
              qst-serve smollm2.qst4 --host 0.0.0.0 --api-key "$KEY" \\
                  --max-batch 8 --max-queue 32
              curl localhost:8080/v1/chat/completions \\
                  -d '{"model":"sst2","messages":[{"role":"user","content":"Hi"}]}'
              curl localhost:8080/admin/sides -d '{"name":"new","path":"runs/new/adapter"}'
            """)

    @OptionGroup var base: ModelArgument
    @Option(
        name: .customLong("side"),
        help: "NAME=FOLDER: a side network (qst-export adapter or side folder); repeat for several.")
    var sides: [String] = []
    @Option(help: "Name of the base model in requests (default: the file name without extension).") var name: String?
    @Option(help: "Address to listen on.") var host = "127.0.0.1"
    @Option(help: "Port to listen on (0: any free port; the chosen one is printed).") var port = 8080
    @Option(help: "Require 'Authorization: Bearer KEY' on every endpoint but /health.") var apiKey: String?
    @Option(help: "Requests decoded together.") var maxBatch = 16
    @Option(help: "Requests waiting beyond the batch before new ones get 429.") var maxQueue = 64
    @Option(help: "Prompt tokens prefilled per step, over all new requests.") var prefillChunk = 128
    @Option(help: "Context length per request (default: the model's, at most 4096).") var context: Int?
    @Option(help: "max_tokens when a request gives none.") var defaultMaxTokens = 256
    @Option(help: "Chat format override: chatml, llama2, llama3 or mistral.") var chatFormat: String?
    @Option(help: "Seconds running requests may take to finish after SIGTERM/SIGINT before they are cancelled.")
    var shutdownGrace: Double = 10
    @OptionGroup var engine: EngineArguments

    func validate(sideSpecs: [(String, String)]) throws {
        for (k, v) in [
            ("--max-batch", maxBatch), ("--max-queue", maxQueue), ("--prefill-chunk", prefillChunk),
            ("--default-max-tokens", defaultMaxTokens),
        ] where v < 1 {
            throw QSTError.option("\(k) must be ≥ 1, got \(v)")
        }
        guard (0...65535).contains(port) else { throw QSTError.option("--port must be in 0…65535, got \(port)") }
        if apiKey == nil, !["127.0.0.1", "localhost", "::1"].contains(host) {
            throw QSTError.option(
                "--host \(host) is not a loopback address: give --api-key to listen beyond this machine")
        }
        let names = sideSpecs.map(\.0)
        if let dup = names.first(where: { n in names.filter { $0 == n }.count > 1 }) {
            throw QSTError.option("--side: the name '\(dup)' is given twice")
        }
    }

    func run() throws {
        let model = self.base.model
        let sideSpecs = try sides.map { spec -> (String, String) in
            guard let eq = spec.firstIndex(of: "="), eq != spec.startIndex, spec.index(after: eq) != spec.endIndex
            else {
                throw QSTError.option("--side expects NAME=FOLDER, got '\(spec)'")
            }
            return (String(spec[..<eq]), String(spec[spec.index(after: eq)...]))
        }
        try validate(sideSpecs: sideSpecs)
        let spec = try TunedModelSpec.open(
            modelPath: model, sidePaths: sideSpecs.map(\.1), options: try engine.options())
        let base = spec.base
        guard !base.config.isOPT else {
            throw QSTError(
                "\(model): qst-serve runs LLaMA-family models (OPT is not supported)", kind: .unsupportedModel)
        }
        let baseName = name ?? URL(fileURLWithPath: model).deletingPathExtension().lastPathComponent
        let registry = SideRegistry(baseName: baseName, precision: SidePackPrecision(for: base.options.matmulPath))
        // An attached side network (merged container) comes first in the spec, named "<base>#side".
        let attached = spec.sides.count - sideSpecs.count
        for k in 0..<attached { registry.add(name: baseName + "#side", weights: spec.sides[k]) }
        for (k, s) in sideSpecs.enumerated() {
            guard s.0 != baseName else { throw QSTError.option("--side \(s.0): that is the base model's name") }
            registry.add(name: s.0, weights: spec.sides[attached + k])
        }
        let tok = try base.source.loadTokenizer()
        var format: ChatFormat?, formatError: String?
        do { format = try tok.chatFormat(override: chatFormat) } catch { formatError = "\(error)" }
        let ctx = context ?? min(base.config.maxPositionEmbeddings ?? 2048, 4096)
        guard ctx >= 2 else { throw QSTError.option("--context must be ≥ 2, got \(ctx)") }
        let scheduler = BatchScheduler(
            base: base, tokenizer: tok,
            limits: .init(
                maxBatch: maxBatch, maxQueue: maxQueue,
                prefillChunk: prefillChunk, context: ctx))
        let routes = ServeRoutes(
            scheduler: scheduler, registry: registry, tokenizer: tok, chatFormat: format,
            chatFormatError: formatError, apiKey: apiKey, modelPath: model,
            baseIdentity: try BaseIdentity.of(base.source), defaultMaxTokens: defaultMaxTokens)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let server: Channel
        do {
            server = try ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 256)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { channel in
                    channel.pipeline.configureHTTPServerPipeline(withErrorHandling: true).flatMapThrowing {
                        try channel.pipeline.syncOperations.addHandler(HTTPHandler(routes: routes))
                    }
                }
                .bind(host: host, port: port).wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw QSTError("cannot listen on \(host):\(port): \(error)", kind: .listenFailed)
        }
        let bound = server.localAddress?.port ?? port
        FileHandle.standardOutput.write(
            Data(
                "qst-serve: listening on http://\(host):\(bound) (models: \(registry.names.joined(separator: ", ")))\n"
                    .utf8))
        // SIGTERM / SIGINT: stop accepting, let running requests finish (up to the grace), then exit 0.
        signal(SIGTERM, SIG_IGN); signal(SIGINT, SIG_IGN)
        let grace = shutdownGrace
        let sources = [SIGTERM, SIGINT].map { sig -> DispatchSourceSignal in
            let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            s.setEventHandler {
                let st = scheduler.stats
                FileHandle.standardError.write(
                    Data("qst-serve: shutting down (\(st.active) running, \(st.queued) queued)\n".utf8))
                server.close(promise: nil)
                scheduler.shutdown(grace: grace)
            }
            s.resume()
            return s
        }
        scheduler.run()
        // Let the last responses reach their clients before the loop goes away.
        try? server.closeFuture.wait()
        Thread.sleep(forTimeInterval: 0.2)
        try? group.syncShutdownGracefully()
        for source in sources { source.cancel() }
        FileHandle.standardError.write(Data("qst-serve: stopped\n".utf8))
    }
}

ToolRunner.main(Serve.self)
