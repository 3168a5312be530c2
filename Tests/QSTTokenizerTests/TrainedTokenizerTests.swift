import Foundation
import QSTTokenizer
import XCTest

/// Small tokenizers trained with the HF `tokenizers` library in the layouts of other model
/// families (Llama 3 and Qwen2 split patterns, GPT-2 with added-token flags, every split behavior,
/// Llama 2 / Mistral byte-fallback BPE), compared with that library on the default corpus.
final class TrainedTokenizerTests: XCTestCase {
    /// Texts aimed at added-token flags, digit grouping and splitting, on top of the default corpus.
    private let extraTexts = [
        "a <mask> b", "x   <mask>", "<mask>", "[SEP]   y", "[SEP]\n\nz", "word", "words", "a word.", "sword", "word_x",
        "HeLLo hello HELLO", "say spaced out", " spaced", "  spaced", "12345678", "1 22 333 4444 55555",
        "3.14159265358979", "Ⅻ ½ ²", "ＡＢＣ ﬁ", "it'S I'LL", "x\r\n\r\n  y", "a,b.c;d!e?f", ",,..;;", "  , . ",
        "<|begin_of_text|>Hi<|eot_id|>", "<|im_start|>user\nHi<|im_end|>\n",
    ]

    private func compare(_ folder: URL, name: String) throws {
        let json = folder.appendingPathComponent("tokenizer.json")
        let tokenizer = try Tokenizer(folder: folder)
        let dir = try Reference.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var inputs = ["--corpus", "default", "--jsonl", try Reference.fuzzTexts(in: dir, count: 500).path]
        for t in extraTexts { inputs += ["--text", t] }
        let records = try Reference.expected(tokenizer: json, inputs: inputs)
        XCTAssertGreaterThan(records.count, 1400, name)
        assertMatchesReference(tokenizer, records)

        let out = dir.appendingPathComponent("decode.jsonl")
        try Reference.run("tokenizer_cases.py", ["decode", "--tokenizer", json.path, out.path])
        struct DecodeCase: Decodable { let ids: [Int]; let decoded: String; let decoded_skip: String }
        var failures = 0
        for c in try Reference.readJSONL(out, as: DecodeCase.self) {
            let plain = tokenizer.decode(c.ids)
            let skipped = tokenizer.decode(c.ids, skipSpecialTokens: true)
            if plain != c.decoded || skipped != c.decoded_skip {
                failures += 1
                if failures <= 3 {
                    XCTFail(
                        "\(name): decode \(c.ids) gives \(plain.debugDescription) / \(skipped.debugDescription), expected \(c.decoded.debugDescription) / \(c.decoded_skip.debugDescription)"
                    )
                }
            }
        }
        XCTAssertEqual(failures, 0, "\(name): decode cases differ")
    }

    func testByteLevelVariantsMatchHF() throws {
        let dir = try Reference.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        try Reference.run("tokenizer_cases.py", ["build", dir.path])
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
        XCTAssertEqual(names.count, 9)
        for name in names {
            try compare(dir.appendingPathComponent(name), name: name)
        }
    }

    func testSentencePieceByteFallbackMatchesHF() throws {
        for style in ["llama2", "metaspace"] {
            let dir = try Reference.temporaryDirectory()
            defer { try? FileManager.default.removeItem(at: dir) }
            try Reference.run("tokenizer_expected.py", ["--train-spm", dir.path, "--style", style])
            try compare(dir, name: "spm-\(style)")
            let tokenizer = try Tokenizer(folder: dir)
            XCTAssertEqual(tokenizer.bosID, 1)
            XCTAssertEqual(tokenizer.eosID, 2)
            XCTAssertEqual(tokenizer.encode("hi", addSpecialTokens: true).first, 1)
            // Streaming must hold back the <0xNN> bytes of a character until it is complete, and
            // keep Metaspace's spaces as a whole decode does.
            let text = "Thou art — naïve 😀 日本 <s> end"
            let ids = tokenizer.encode(text)
            var stream = StreamingDecoder(tokenizer: tokenizer, skipSpecialTokens: false)
            var pieces = ids.map { stream.push($0) }
            pieces.append(stream.finish())
            XCTAssertEqual(pieces.joined(), tokenizer.decode(ids), style)
            XCTAssertFalse(pieces.contains { $0.contains("\u{FFFD}") }, style)
            XCTAssertGreaterThan(pieces.filter(\.isEmpty).count, 3, "multi-byte characters span several byte tokens")
        }
    }
}
