import Foundation
import QSTTokenizer
import XCTest

/// Chat formats against jinja2 renderings of the published templates (Scripts/tokenizer_cases.py).
final class ChatFormatTests: XCTestCase {
    private struct ChatCase: Decodable {
        struct Message: Decodable { let role: String; let content: String }
        let name: String
        let template: String
        let bos_token: String
        let eos_token: String
        let messages: [Message]
        let add_generation_prompt: Bool
        let rendered: String
    }

    func testRenderMatchesJinjaTemplates() throws {
        let dir = try Reference.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("chat.jsonl")
        var args = ["chat", out.path]
        let config = Reference.smolLM2Folder.appendingPathComponent("tokenizer_config.json")
        if FileManager.default.fileExists(atPath: config.path) { args += ["--template-file", config.path] }
        try Reference.run("tokenizer_cases.py", args)
        let cases = try Reference.readJSONL(out, as: ChatCase.self)
        XCTAssertGreaterThan(cases.count, 30)
        let expectedKinds: [String: ChatFormat.Kind] = [
            "chatml": .chatml, "qwen2": .chatml, "config": .chatml,
            "llama2": .llama2, "llama3": .llama3, "mistral": .mistral,
        ]
        for c in cases {
            let format = try ChatFormat(template: c.template, bosToken: c.bos_token, eosToken: c.eos_token)
            XCTAssertEqual(format.kind, expectedKinds[c.name], c.name)
            let messages = c.messages.map { ChatMessage(role: $0.role, content: $0.content) }
            XCTAssertEqual(
                format.render(messages: messages, addGenerationPrompt: c.add_generation_prompt), c.rendered,
                "\(c.name) generation=\(c.add_generation_prompt) \(messages.map(\.role))")
        }
    }

    func testUnrecognisedTemplateNamesFieldAndOverride() {
        XCTAssertThrowsError(try ChatFormat(template: "{{ messages[0].content }}", bosToken: "", eosToken: "")) {
            error in
            let message = String(describing: error)
            XCTAssertEqual((error as? QSTError)?.kind, .unknownChatFormat, message)
            XCTAssertTrue(message.contains("tokenizer_config.json"), message)
            XCTAssertTrue(message.contains("chat_template"), message)
            XCTAssertTrue(message.contains("--chat-format chatml|llama2|llama3|mistral"), message)
        }
        XCTAssertThrowsError(try ChatFormat(name: "vicuna", bosToken: "", eosToken: "")) {
            XCTAssertEqual(($0 as? QSTError)?.kind, .unknownChatFormat, "\($0)")
        }
        XCTAssertEqual(
            try ChatFormat(name: "LLAMA3", bosToken: "", eosToken: "").endTokens, ["<|eot_id|>", "<|end_of_text|>"])
    }
}
