import Foundation
import QSTTokenizer
import XCTest

/// Bad tokenizer files give one-line errors naming the file and the field, never a crash.
final class TokenizerErrorTests: XCTestCase {
    private func message(_ json: String) -> String {
        do {
            _ = try Tokenizer(tokenizerJSON: Data(json.utf8), configJSON: nil)
            return "no error"
        } catch {
            return String(describing: error)
        }
    }

    private func kind(_ json: String) -> QSTError.Kind? {
        do {
            _ = try Tokenizer(tokenizerJSON: Data(json.utf8), configJSON: nil)
            return nil
        } catch {
            return (error as? QSTError)?.kind
        }
    }

    /// Each failure has its kind (the messages below check that the line names the file and the field).
    func testMalformedFilesHaveTheirKind() {
        let bpe = #""model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}"#
        XCTAssertEqual(kind("{"), .invalidJSON)
        XCTAssertEqual(kind(#"{"model": {"type": "Unigram", "vocab": []}}"#), .unsupportedTokenizerFeature)
        XCTAssertEqual(
            kind(#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a c"]}}"#), .invalidTokenizerField)
        XCTAssertEqual(kind(#"{"model": {"type": "BPE", "vocab": {"a": -1}, "merges": []}}"#), .invalidTokenizerField)
        XCTAssertEqual(kind("{\(bpe), \"normalizer\": {\"type\": \"Precompiled\"}}"), .unsupportedTokenizerFeature)
        XCTAssertEqual(
            kind(
                "{\(bpe), \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(?<=a)b\"}, \"behavior\": \"Isolated\"}}"
            ),
            .invalidPattern)
        XCTAssertEqual(
            kind(
                "{\(bpe), \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(a\"}, \"behavior\": \"Isolated\"}}"
            ),
            .invalidPattern)
        XCTAssertNil(kind("{\(bpe)}"))
    }

    func testMalformedFilesAreReported() {
        let bpe = #""model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}"#
        XCTAssertTrue(message("{").hasPrefix("tokenizer.json: invalid JSON at byte 1"))
        XCTAssertEqual(
            message(#"{"model": {"type": "Unigram", "vocab": []}}"#),
            "tokenizer.json: field 'model': model type 'Unigram' is not supported")
        XCTAssertEqual(
            message(#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a c"]}}"#),
            "tokenizer.json: field 'model.merges[0]': not a pair of vocabulary tokens")
        XCTAssertEqual(
            message("{\(bpe), \"normalizer\": {\"type\": \"Precompiled\"}}"),
            "tokenizer.json: field 'normalizer': normalizer type 'Precompiled' is not supported")
        XCTAssertTrue(
            message(
                "{\(bpe), \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(?<=a)b\"}, \"behavior\": \"Isolated\"}}"
            )
            .hasPrefix("tokenizer.json: field 'pre_tokenizer.pattern': regex '(?<=a)b': lookbehind is not supported"))
        XCTAssertFalse(message("{\(bpe)}").contains("\n"))
    }

    func testMinimalBPEMergesByRank() throws {
        // "a b" has rank 0 and "b c" rank 1: "abc" must become [ab, c], "bc" [bc].
        let json =
            #"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "c": 2, "ab": 3, "bc": 4}, "merges": ["a b", "b c"]}}"#
        let tokenizer = try Tokenizer(tokenizerJSON: Data(json.utf8), configJSON: nil)
        XCTAssertEqual(tokenizer.encode("abc"), [3, 2])
        XCTAssertEqual(tokenizer.encode("bc"), [4])
        XCTAssertEqual(tokenizer.vocabSize, 5)
        XCTAssertNil(tokenizer.chatFormat)
        XCTAssertThrowsError(try tokenizer.chatFormat(override: nil)) {
            XCTAssertEqual(($0 as? QSTError)?.kind, .unknownChatFormat, "\($0)")
        }
        XCTAssertEqual(try tokenizer.chatFormat(override: "chatml").kind, .chatml)
    }
    /// What the tokenizer's JSON reading keeps from its former own parser: a leading byte-order mark is
    /// allowed, a U+FEFF at the start of a vocabulary entry is kept (Foundation on Linux drops it), the
    /// last of two equal keys wins, and an escaped entry reads the same as a literal one.
    func testJSONReadingKeepsVocabularyExactly() throws {
        let json =
            #"{"model": {"type": "BPE", "vocab": {"\ufeffa": 0, "b": 9, "b": 1, "\u00e9": 2, "ab": 3}, "merges": []}}"#
        let tokenizer = try Tokenizer(tokenizerJSON: Data([0xEF, 0xBB, 0xBF]) + Data(json.utf8), configJSON: nil)
        XCTAssertEqual(tokenizer.tokenID("\u{FEFF}a"), 0)
        XCTAssertNil(tokenizer.tokenID("a"))
        XCTAssertEqual(tokenizer.tokenID("b"), 1)
        XCTAssertEqual(tokenizer.tokenID("é"), 2)
        XCTAssertEqual(tokenizer.token(2), "é")
        // A byte-order mark anywhere else, and a lone surrogate, are errors naming the file and the byte.
        XCTAssertEqual(message(" \u{FEFF}{}"), "tokenizer.json: invalid JSON at byte 1: unexpected character 'ï'")
        XCTAssertEqual(
            message(#"{"model": "\ud800"}"#),
            "tokenizer.json: invalid JSON at byte 17: unpaired surrogate in \\u escape")
    }
}
