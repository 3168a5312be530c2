import Foundation
import XCTest

/// qst-serve against the official `openai` Python client (Scripts/serve_client_check.py): chat, completion,
/// streaming, model selection among side networks with greedy answers equal to `qst-generate --side`,
/// errors, admin endpoint, client disconnect, queue bound, API key, SIGTERM.
final class ServeToolTests: ToolTestCase {
    /// A running server: its process, base URL and what it printed.
    final class Server {
        let process: Process
        let url: String
        let stderr: Pipe
        init(process: Process, url: String, stderr: Pipe) {
            self.process = process; self.url = url; self.stderr = stderr
        }

        /// SIGTERM, then the exit status and stderr.
        func stop() -> (Int32, String) {
            kill(process.processIdentifier, SIGTERM)
            let err = stderr.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return (process.terminationStatus, String(decoding: err, as: UTF8.self))
        }
    }

    /// `environment`: the server's whole environment (nil: this process's).
    func startServer(_ args: [String], environment: [String: String]? = nil) throws -> Server {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try ToolHarness.binary("qst-serve"))
        p.arguments = args + ["--port", "0"]
        if let environment { p.environment = environment }
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        // The first stdout line names the port: "qst-serve: listening on http://127.0.0.1:PORT (...)".
        var line = Data()
        while !line.contains(UInt8(ascii: "\n")) {
            let d = out.fileHandleForReading.availableData
            if d.isEmpty { break }
            line += d
        }
        let text = String(decoding: line, as: UTF8.self)
        guard let r = text.range(of: #"http://[^ ]+"#, options: .regularExpression) else {
            p.waitUntilExit()
            let e = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            XCTFail("qst-serve did not start: \(text) \(e)")
            throw XCTSkip("no server")
        }
        return Server(process: p, url: String(text[r]) + "/v1", stderr: err)
    }

    func python() throws -> String {
        guard let py = ProcessInfo.processInfo.environment["QST_PYTHON"] else {
            throw XCTSkip("QST_PYTHON not set (Scripts/test sets it up with the openai package)")
        }
        return py
    }

    func runCheck(_ server: Server, expected: [String: Any], mode: String = "full") throws {
        let file = path("expected-\(mode).json")
        try JSONSerialization.data(withJSONObject: expected).write(to: URL(fileURLWithPath: file))
        let script = ToolHarness.repo.appendingPathComponent("Scripts/serve_client_check.py").path
        let r = try ToolHarness.run("/usr/bin/env", [try python(), script, server.url, file, "--mode", mode])
        XCTAssertEqual(r.status, 0, "serve_client_check \(mode):\n\(r.stdout)\n\(r.stderr)")
        XCTAssertTrue(r.stdout.contains("all checks passed"), r.stdout)
    }

    /// What `qst-generate` answers greedily (its --json text), with or without --chat and --side.
    /// `chatFormat`: the override both tools get (the synthetic model's tokenizer has no chat template).
    var chatFormat: String?

    func generated(_ model: String, side: String?, prompt: String, chat: Bool, maxTokens: Int) throws -> String {
        var args = [model, "--prompt", prompt, "--max-tokens", String(maxTokens), "--json"]
        if chat { args.append("--chat") }
        if chat, let chatFormat { args += ["--chat-format", chatFormat] }
        if let side { args += ["--side", side] }
        let r = try ok("qst-generate", args)
        return try XCTUnwrap(try ToolHarness.json(r.stdout)["text"] as? String)
    }

    func expected(model: String, sides: [String: String?], prompt: String, chatPrompt: String, maxTokens: Int) throws
        -> [String: Any]
    {
        var models: [String: Any] = [:]
        for (name, side) in sides {
            models[name] = [
                "completion": try generated(model, side: side, prompt: prompt, chat: false, maxTokens: maxTokens),
                "chat": try generated(model, side: side, prompt: chatPrompt, chat: true, maxTokens: maxTokens),
            ]
        }
        return ["prompt": prompt, "chat_prompt": chatPrompt, "max_tokens": maxTokens, "models": models]
    }

    func testTinyModelWithSeveralSidesOverOpenAIClient() throws {
        _ = try python()
        let model = path("synthetic.qst4")
        try ok("qst-synthetic", ["tiny", "-o", model])
        chatFormat = "chatml"
        var sides: [String: String?] = ["synthetic": nil]
        for k in 1...3 {
            try ok("qst-init-side", [model, "-o", path("side\(k)"), "--seed", String(k), "--init", "reference"])
            sides["s\(k)"] = path("side\(k)")
        }
        try ok("qst-init-side", [model, "-o", path("side9"), "--seed", "9", "--init", "reference"])
        let prompt = "the cat sat on", chatPrompt = "hello there"
        var exp = try expected(model: model, sides: sides, prompt: prompt, chatPrompt: chatPrompt, maxTokens: 12)
        let answers = Set((exp["models"] as! [String: [String: String]]).values.map { $0["completion"]! })
        XCTAssertGreaterThan(answers.count, 1, "the side networks should not all answer like the base: \(answers)")
        exp["admin_side"] = path("side9")
        exp["admin_expected"] = try generated(model, side: path("side9"), prompt: prompt, chat: false, maxTokens: 12)
        // --context 4096: the disconnect check's 2000-token stream must still be running when it hangs up.
        let server = try startServer(
            [model, "--chat-format", "chatml", "--context", "4096"]
                + (1...3).map { ["--side", "s\($0)=" + path("side\($0)")] }.joined())
        try runCheck(server, expected: exp)
        let (status, err) = server.stop()
        XCTAssertEqual(status, 0, "SIGTERM should end qst-serve cleanly: \(err)")
        XCTAssertTrue(err.contains("stopped"), err)
    }

    func testQueueBoundAndAPIKey() throws {
        _ = try python()
        let model = path("synthetic.qst4")
        try ok("qst-synthetic", ["tiny", "-o", model])
        // Started without OpenBLAS's thread timeout: the tool re-executes itself with it (and the core type)
        // set before OpenBLAS loads (BLASEnvironment), which its process environment shows.
        var inherited = ProcessInfo.processInfo.environment
        inherited["OPENBLAS_THREAD_TIMEOUT"] = nil
        let busy = try startServer([model, "--max-batch", "1", "--max-queue", "1"], environment: inherited)
        let environ = try String(contentsOfFile: "/proc/\(busy.process.processIdentifier)/environ", encoding: .utf8)
            .split(separator: "\0")
        XCTAssertTrue(environ.contains("OPENBLAS_THREAD_TIMEOUT=4"), "\(environ.filter { $0.hasPrefix("OPENBLAS") })")
        try runCheck(busy, expected: ["base": "synthetic", "prompt": "the cat sat on"], mode: "busy")
        XCTAssertEqual(busy.stop().0, 0)
        let keyed = try startServer([model, "--api-key", "sekrit"])
        try runCheck(keyed, expected: ["base": "synthetic", "api_key": "sekrit"], mode: "auth")
        XCTAssertEqual(keyed.stop().0, 0)
        // Beyond loopback without a key: refused with one line.
        let r = try ToolHarness.run("qst-serve", [model, "--host", "0.0.0.0"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("--api-key"), r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
    }

    /// SIGTERM while a stream runs: the stream still ends normally, new connections are refused, exit 0.
    func testSIGTERMFinishesInFlightRequests() throws {
        let py = try python()
        let model = path("synthetic.qst4")
        try ok("qst-synthetic", ["tiny", "-o", model])
        // A long continuation (seconds even on a quiet machine) so the signal lands while it runs.
        let server = try startServer([model, "--shutdown-grace", "120", "--context", "4096"])
        let file = path("inflight.json")
        try JSONSerialization.data(withJSONObject: [
            "base": "synthetic", "prompt": "the cat sat on", "max_tokens": 3000,
        ])
        .write(to: URL(fileURLWithPath: file))
        let client = Process()
        client.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        client.arguments = [
            py, ToolHarness.repo.appendingPathComponent("Scripts/serve_client_check.py").path,
            server.url, file, "--mode", "inflight",
        ]
        let out = Pipe()
        client.standardOutput = out
        try client.run()
        var seen = Data()
        while !String(decoding: seen, as: UTF8.self).contains("first chunk") {
            let d = out.fileHandleForReading.availableData
            if d.isEmpty { break }
            seen += d
        }
        let (status, err) = server.stop()
        seen += out.fileHandleForReading.readDataToEndOfFile()
        client.waitUntilExit()
        let text = String(decoding: seen, as: UTF8.self)
        XCTAssertEqual(client.terminationStatus, 0, text)
        XCTAssertTrue(text.contains("all checks passed"), text)
        XCTAssertEqual(status, 0, err)
        // The request was still running when the signal came (else this test would prove nothing).
        XCTAssertTrue(err.contains("shutting down (1 running") && err.contains("stopped"), err)
    }

    /// The real SmolLM2 with a side network: greedy chat over HTTP equals qst-generate --side.
    func testRealModelGreedyEqualsGenerate() throws {
        try requireRealModelBuild()
        _ = try python()
        guard let f32 = ProcessInfo.processInfo.environment["QST_MODEL_F32"] else {
            throw XCTSkip("QST_MODEL_F32 not set")
        }
        let model = path("smollm2.qst4")
        try ok("qst-quantize", [f32, model])
        try ok("qst-init-side", [model, "-o", path("side"), "--seed", "5", "--init", "reference"])
        let base = "smollm2"
        let exp = try expected(
            model: model, sides: [base: nil, "tuned": path("side")],
            prompt: "The capital of France is", chatPrompt: "Name three colours.", maxTokens: 16)
        let server = try startServer([model, "--side", "tuned=" + path("side")])
        try runCheck(server, expected: exp)
        XCTAssertEqual(server.stop().0, 0)
    }
}
