import Foundation
import QSTTokenizer
import XCTest

/// The real SmolLM2 tokenizer (byte-level BPE, Digits + ByteLevel pre-tokenizers) against the HF
/// `tokenizers` library on the shared data sets and edge cases. Needs Scripts/fetch-model.
final class SmolLM2TokenizerTests: XCTestCase {
    private func loadSmolLM2() throws -> (Tokenizer, URL) {
        let folder = Reference.smolLM2Folder
        let json = folder.appendingPathComponent("tokenizer.json")
        guard FileManager.default.fileExists(atPath: json.path) else {
            try Reference.unavailable("\(json.path) missing (run Scripts/fetch-model)")
        }
        return (try Tokenizer(folder: folder), json)
    }

    func testDefaultCorpusMatchesHF() throws {
        let (tokenizer, json) = try loadSmolLM2()
        let records = try Reference.expected(tokenizer: json, inputs: ["--corpus", "default"])
        XCTAssertGreaterThan(records.count, 900)
        assertMatchesReference(tokenizer, records)
    }

    func testFuzzTextsMatchHF() throws {
        let (tokenizer, json) = try loadSmolLM2()
        let dir = try Reference.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let fuzz = try Reference.fuzzTexts(in: dir)
        let records = try Reference.expected(tokenizer: json, inputs: ["--jsonl", fuzz.path])
        XCTAssertEqual(records.count, 2000)
        assertMatchesReference(tokenizer, records)
    }

    func testWholeDataFilesMatchHF() throws {
        let (tokenizer, json) = try loadSmolLM2()
        let data = Reference.dataDir
        let mmlu = try FileManager.default.contentsOfDirectory(atPath: data + "/mmlu/dev").sorted().prefix(10)
        var inputs = [
            "--file", data + "/text/wiki.test.raw", "--file", data + "/text/tinyshakespeare.txt",
            "--lines", data + "/sst2/dev.tsv", "--file", data + "/alpaca/seed_tasks.jsonl",
        ]
        for name in mmlu { inputs += ["--file", data + "/mmlu/dev/" + name] }
        let records = try Reference.expected(tokenizer: json, inputs: inputs)
        XCTAssertGreaterThan(records.count, 800)
        assertMatchesReference(tokenizer, records, checkSpecial: false)
    }

    func testDecodeOfArbitraryIdsMatchesHF() throws {
        let (tokenizer, json) = try loadSmolLM2()
        let dir = try Reference.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("decode.jsonl")
        try Reference.run("tokenizer_cases.py", ["decode", "--tokenizer", json.path, out.path])
        struct DecodeCase: Decodable { let ids: [Int]; let decoded: String; let decoded_skip: String }
        let cases = try Reference.readJSONL(out, as: DecodeCase.self)
        XCTAssertEqual(cases.count, 300)
        for c in cases {
            XCTAssertEqual(tokenizer.decode(c.ids), c.decoded, "\(c.ids)")
            XCTAssertEqual(tokenizer.decode(c.ids, skipSpecialTokens: true), c.decoded_skip, "\(c.ids)")
        }
    }

    /// The whole 1.3 MB WikiText test split must encode in well under a few seconds in release
    /// (measured about 0.5 s on one core); debug builds only report the time.
    func testEncodeSpeedOnWikiText() throws {
        let (tokenizer, _) = try loadSmolLM2()
        let text = try String(contentsOfFile: Reference.dataDir + "/text/wiki.test.raw", encoding: .utf8)
        let start = Date()
        let ids = tokenizer.encode(text)
        let seconds = Date().timeIntervalSince(start)
        print(
            "SmolLM2 encode of wiki.test.raw: \(text.utf8.count) bytes -> \(ids.count) ids in \(String(format: "%.2f", seconds)) s"
        )
        XCTAssertGreaterThan(ids.count, 250_000)
        #if !DEBUG
            XCTAssertLessThan(seconds, 3.0)
        #endif
    }

    func testConfigTokens() throws {
        let (tokenizer, _) = try loadSmolLM2()
        // tokenizer_config.json names <|im_start|> as bos and <|im_end|> as eos and pad; their ids
        // are those of added_tokens in tokenizer.json.
        XCTAssertEqual(tokenizer.bosID, tokenizer.tokenID("<|im_start|>"))
        XCTAssertEqual(tokenizer.eosID, tokenizer.tokenID("<|im_end|>"))
        XCTAssertEqual(tokenizer.padID, tokenizer.tokenID("<|im_end|>"))
        XCTAssertEqual(tokenizer.vocabSize, 49152)
        XCTAssertEqual(tokenizer.chatFormat?.kind, .chatml)
        XCTAssertEqual(tokenizer.chatFormat?.endTokens, ["<|im_end|>"])
    }

    func testStreamingDecodeConcatenatesToFullDecode() throws {
        let (tokenizer, _) = try loadSmolLM2()
        let texts = [
            "Hello, world! 😀 naïve café — 日本語のテキスト 👨‍👩‍👧‍👦",
            try String(contentsOfFile: Reference.dataDir + "/text/wiki.test.raw", encoding: .utf8).prefix(20_000)
                .description,
        ]
        for text in texts {
            let ids = tokenizer.encode(text)
            var stream = StreamingDecoder(tokenizer: tokenizer, skipSpecialTokens: false)
            var pieces: [String] = []
            for id in ids { pieces.append(stream.push(id)) }
            pieces.append(stream.finish())
            XCTAssertEqual(pieces.joined(), tokenizer.decode(ids))
            XCTAssertEqual(pieces.joined(), text)
            // No piece may end in a partial character (which would print as U+FFFD).
            XCTAssertFalse(pieces.contains { $0.contains("\u{FFFD}") })
        }
    }
}
