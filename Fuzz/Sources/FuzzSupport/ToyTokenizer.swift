import Foundation
import QSTSide
import QSTTokenizer

/// A tokenizer for the data-reader fuzzers: one token per UTF-8 byte (ids 3...258), BOS 1, EOS 2,
/// and the ChatML template, so the readers' own logic is what runs.
public struct ToyTokenizer: ExampleTokenizer, Sendable {
    let chat: ChatFormat
    public init() throws { chat = try ChatFormat(name: "chatml", bosToken: "<s>", eosToken: "</s>") }
    public func encodeIDs(_ text: String, addSpecialTokens: Bool) -> [Int32] {
        (addSpecialTokens ? [1] : []) + text.utf8.map { Int32($0) + 3 }
    }
    public var eosTokenID: Int32? { 2 }
    public func renderChat(_ messages: [ChatMessage], addGenerationPrompt: Bool) throws -> String {
        chat.render(messages: messages, addGenerationPrompt: addGenerationPrompt)
    }
}
