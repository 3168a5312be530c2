import Foundation
import FuzzDriver
import FuzzSupport
import QSTTokenizer

/// tokenizer.json (part 1) and tokenizer_config.json (part 2, optional) as the loader reads them, then
/// a round of encoding, decoding and chat rendering with whatever loaded.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTokenizer(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let parts = FuzzInput.parts(UnsafeRawBufferPointer(start: data, count: size))
    guard let tok = try? Tokenizer(tokenizerJSON: parts[0], configJSON: parts.count > 1 ? parts[1] : nil) else { return 0 }
    let text = parts.count > 2 ? String(decoding: parts[2].prefix(512), as: UTF8.self) : "Hello wörld  12 <s>\n\tend"
    let ids = tok.encode(text, addSpecialTokens: true)
    _ = tok.decode(ids)
    _ = tok.decode(ids + [-1, tok.vocabSize, Int.max], skipSpecialTokens: true)
    if let chat = try? tok.chatFormat(override: nil) {
        _ = chat.render(messages: [ChatMessage(role: "system", content: "s"), ChatMessage(role: "user", content: text),
                                   ChatMessage(role: "assistant", content: "a")], addGenerationPrompt: true)
    }
    return 0
}

@_cdecl("fuzz_tokenizer_main")
public func fuzzTokenizerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    qst_fuzz_run(argc, argv, fuzzTokenizer)
}
