import Foundation
import QSTServe
import XCTest

/// qst-serve's pure pieces: stop strings over streamed text, request validation, response shapes.
final class ServeUnitTests: XCTestCase {
    /// Streams `pieces` through `StopStrings`; returns what a client received and whether it stopped.
    func stream(_ pieces: [String], stops: [String]) -> (String, Bool) {
        var s = StopStrings(stops), out = ""
        for p in pieces {
            let (t, stopped) = s.push(p)
            out += t
            if stopped { return (out, true) }
        }
        return (out + s.finish(), false)
    }

    func testStopStringsCutAcrossPiecesAndNeverLeakAPrefix() {
        XCTAssertEqual(stream(["Hello", " wor", "ld", "!"], stops: ["world"]).0, "Hello ")
        XCTAssertTrue(stream(["Hello", " wor", "ld"], stops: ["world"]).1)
        // The first stop string in the text wins, whatever the list's order.
        XCTAssertEqual(stream(["a b c"], stops: ["c", "b"]).0, "a ")
        // A held-back prefix that does not become a stop string is sent later.
        XCTAssertEqual(stream(["ab", "x"], stops: ["bc"]).0, "abx")
        XCTAssertFalse(stream(["ab", "x"], stops: ["bc"]).1)
        var s = StopStrings(["END"])
        XCTAssertEqual(s.push("to EN").text, "to ", "a possible stop prefix is held back")
        XCTAssertEqual(s.push("D").text, "")
        XCTAssertEqual(stream(["no stops"], stops: []).0, "no stops")
        // Every split of a text gives the same result as the whole text at once.
        let text = "one two three four"
        for cut in 1..<text.count {
            let i = text.index(text.startIndex, offsetBy: cut)
            XCTAssertEqual(stream([String(text[..<i]), String(text[i...])], stops: ["three"]).0, "one two ")
        }
    }

    func testRequestValidation() throws {
        func bad(_ body: String, chat: Bool = false, status: Int = 400, param: String? = nil) {
            XCTAssertThrowsError(try CompletionParameters.parse(body: Array(body.utf8), chat: chat), body) { e in
                let api = e as? APIError
                XCTAssertEqual(api?.status, status, body)
                if let param { XCTAssertEqual(api?.param, param, body) }
            }
        }
        bad("{oops")
        bad("[1]")
        bad(#"{"prompt": "x"}"#, param: "model")
        bad(#"{"model": "m", "messages": []}"#, chat: true, param: "messages")
        bad(#"{"model": "m", "messages": [{"role": "robot", "content": "x"}]}"#, chat: true, param: "messages")
        bad(#"{"model": "m", "prompt": "x", "temperature": 3}"#, param: "temperature")
        bad(#"{"model": "m", "prompt": "x", "top_p": 0}"#, param: "top_p")
        bad(#"{"model": "m", "prompt": "x", "max_tokens": 0}"#, param: "max_tokens")
        bad(#"{"model": "m", "prompt": "x", "max_tokens": 1.5}"#, param: "max_tokens")
        bad(#"{"model": "m", "prompt": "x", "stop": [1]}"#, param: "stop")
        bad(#"{"model": "m", "prompt": "x", "n": 2}"#, param: "n")
        bad(#"{"model": "m", "prompt": "x", "stream": "yes"}"#, param: "stream")
        let p = try CompletionParameters.parse(
            body: Array(
                #"""
                {"model": "m", "messages": [{"role": "system", "content": "Be brief."},
                 {"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
                 "max_tokens": 5, "temperature": 0, "top_p": 0.5, "stop": "\n", "seed": 3, "stream": true,
                 "stream_options": {"include_usage": true}}
                """#.utf8), chat: true)
        XCTAssertEqual(
            p.input, .messages([.init(role: "system", content: "Be brief."), .init(role: "user", content: "Hi")]))
        XCTAssertEqual(p.maxTokens, 5); XCTAssertEqual(p.temperature, 0); XCTAssertEqual(p.topP, 0.5)
        XCTAssertEqual(p.stop, ["\n"]); XCTAssertEqual(p.seed, 3); XCTAssertTrue(p.stream);
        XCTAssertTrue(p.includeUsageInStream)
    }

    func testResponseShapes() throws {
        let r = OpenAIResponse(id: "chatcmpl-1", model: "m", created: 7, chat: true)
        let doc = try XCTUnwrap(
            JSONSerialization.jsonObject(
                with: r.complete(
                    text: "a\"b", finishReason: "stop",
                    promptTokens: 3, completionTokens: 2)) as? [String: Any])
        XCTAssertEqual(doc["object"] as? String, "chat.completion")
        let choice = try XCTUnwrap((doc["choices"] as? [[String: Any]])?.first)
        XCTAssertEqual((choice["message"] as? [String: Any])?["content"] as? String, "a\"b")
        XCTAssertEqual((doc["usage"] as? [String: Int])?["total_tokens"], 5)
        let chunk = String(decoding: r.chunk(text: "x"), as: UTF8.self)
        XCTAssertTrue(chunk.hasPrefix("data: {") && chunk.hasSuffix("}\n\n"), chunk)
        let err = try XCTUnwrap(
            JSONSerialization.jsonObject(with: APIError(404, "no", param: "model").json) as? [String: Any])
        XCTAssertEqual((err["error"] as? [String: Any])?["param"] as? String, "model")
    }
}
