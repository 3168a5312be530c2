import Foundation
import QSTFormat
import QSTNN
import QSTTokenizer
import XCTest
import QSTTestSupport
@testable import QSTSide

/// Data loading: record formats, loss masks, bad records, truncation, GLUE presets on the real files.
final class TrainingDataTests: XCTestCase {
    let tok = ToyTokenizer()
    let x = ChunkedCrossEntropy.ignoreIndex

    private func write(_ text: String, ext: String = "jsonl") throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("qst-data-\(UUID().uuidString).\(ext)")
            .path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func testRecordFormatsAndLossMasks() throws {
        let path = try write(
            """
            {"prompt": "ab", "completion": "cd"}
            {"text": "xyz"}

            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "r"}]}
            """)
        let out = try RecordLoading.load(path: path, tokenizer: tok, maxLength: 100, skipBad: false)
        XCTAssertEqual(out.examples.count, 3)
        let ab = tok.encodeIDs("ab", addSpecialTokens: true), cd = tok.encodeIDs("cd", addSpecialTokens: false)
        // prompt/completion: positions 1, 2, 3 predict c, d, EOS.
        XCTAssertEqual(out.examples[0].ids, ab + cd + [0])
        XCTAssertEqual(out.examples[0].labels, [x, cd[0], cd[1], 0, x])
        // text: every next token, EOS included.
        XCTAssertEqual(out.examples[1].labels, Array(out.examples[1].ids.dropFirst()) + [x])
        // chat: only the assistant's content ("r") is trained; "<user>q<assistant>" is context.
        let chat = out.examples[2]
        let context = tok.encodeIDs("<user>q<assistant>", addSpecialTokens: true)
        XCTAssertEqual(chat.ids, context + tok.encodeIDs("r", addSpecialTokens: false))
        XCTAssertEqual(chat.labelledCount, 1)
        XCTAssertEqual(chat.labels[context.count - 1], tok.encodeIDs("r", addSpecialTokens: false)[0])
    }

    func testBadRecordsNameTheLineOrAreCounted() throws {
        let path = try write("{\"text\": \"ok\"}\n{\"prompt\": 3, \"completion\": \"x\"}\nnot json\n{\"other\": 1}\n")
        XCTAssertThrowsError(try RecordLoading.load(path: path, tokenizer: tok, maxLength: 100, skipBad: false)) { e in
            XCTAssertTrue("\(e)".contains(path + ": line 2:") && "\(e)".contains("'prompt'"), "\(e)")
        }
        let out = try RecordLoading.load(path: path, tokenizer: tok, maxLength: 100, skipBad: true)
        XCTAssertEqual(out.examples.count, 1)
        XCTAssertEqual(out.skippedBad, 3)
    }

    func testTruncationIsCounted() throws {
        let path = try write("{\"text\": \"abcdefghij\"}\n{\"text\": \"ab\"}\n")
        let out = try RecordLoading.load(path: path, tokenizer: tok, maxLength: 5, skipBad: false)
        XCTAssertEqual(out.truncated, 1)
        XCTAssertEqual(out.examples[0].ids.count, 5)
        XCTAssertEqual(out.examples[0].labels.last, x, "the last kept position has nothing to predict")
        // A prompt that alone fills the limit leaves nothing to train on: dropped and counted, not an error.
        let long = try write("{\"prompt\": \"abcdefgh\", \"completion\": \"ij\"}\n{\"text\": \"ab\"}\n")
        let out2 = try RecordLoading.load(path: long, tokenizer: tok, maxLength: 5, skipBad: false)
        XCTAssertEqual(out2.examples.count, 1)
        XCTAssertEqual(out2.droppedTooLong, 1)
    }

    func testAlpacaArrayBecomesChat() throws {
        let path = try write(#"[{"instruction": "do", "input": "it", "output": "done"}]"#, ext: "json")
        let out = try RecordLoading.load(path: path, tokenizer: tok, maxLength: 100, skipBad: false)
        XCTAssertEqual(out.examples.count, 1)
        XCTAssertEqual(out.examples[0].labelledCount, 4)
    }

    /// The real SST-2 dev file: 872 records, 428 negative and 444 positive (shared/data/README.md).
    func testSST2PresetOnTheRealDevFile() throws {
        let path = try TestRequirement.sharedData("sst2/dev.tsv")
        let task = try GLUETask.named("sst2")
        // The toy tokenizer cannot tell " negative" from " positive" by first token; use words that differ.
        let out = try task.load(path: path, tokenizer: FirstLetterTokenizer(), maxLength: 64, skipBad: false)
        XCTAssertEqual(out.examples.count, 872)
        XCTAssertEqual(out.examples.filter { $0.classLabel == 0 }.count, 428)
        XCTAssertEqual(out.examples.filter { $0.classLabel == 1 }.count, 444)
        for e in out.examples {
            let pos = try XCTUnwrap(e.answerPosition)
            XCTAssertEqual(e.labelledCount, 1)
            XCTAssertEqual(e.labels[pos], out.labelTokens?[e.classLabel!])
            XCTAssertEqual(e.ids[pos + 1], e.labels[pos])
        }
        XCTAssertGreaterThan(out.truncated, 0, "some dev sentences exceed 64 characters")
    }

    func testGLUEBadLabelNamesLine() throws {
        let path = try write("sentence\tlabel\ngood\t1\nbad\tmaybe\n", ext: "tsv")
        XCTAssertThrowsError(
            try GLUETask.named("sst2").load(
                path: path, tokenizer: FirstLetterTokenizer(), maxLength: 64,
                skipBad: false)
        ) {
            XCTAssertTrue("\($0)".contains("line 3") && "\($0)".contains("maybe"), "\($0)")
        }
        XCTAssertThrowsError(try GLUETask.named("qqp"))
    }
}

/// Toy tokenizer whose ids are characters (so label words start with distinct tokens after a space-skip).
struct FirstLetterTokenizer: ExampleTokenizer {
    func encodeIDs(_ text: String, addSpecialTokens: Bool) -> [Int32] {
        text.unicodeScalars.filter { $0 != " " }.map { Int32($0.value % 200) }
    }
    var eosTokenID: Int32? { nil }
    func renderChat(_ messages: [ChatMessage], addGenerationPrompt: Bool) throws -> String { "" }
}

/// Multi-turn chat records with SmolLM2's own tokenizer and chat template (ChatML): loss on every assistant
/// turn (its content and end token), none on the system prompt, the user turns or the role headers.
final class ChatTrainingDataTests: XCTestCase {
    func testMultiTurnChatWithSmolLM2TemplateTrainsAssistantTurnsOnly() throws {
        let folder = TestEnvironment.realModelF32
        guard FileManager.default.fileExists(atPath: folder + "/tokenizer.json") else {
            try ExportFixtures.unavailable("SmolLM2 tokenizer not found at \(folder)")
        }
        let tok = try Tokenizer(
            tokenizerJSON: try Data(contentsOf: URL(fileURLWithPath: folder + "/tokenizer.json")),
            configJSON: try? Data(contentsOf: URL(fileURLWithPath: folder + "/tokenizer_config.json")))
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("qst-chat-\(UUID().uuidString).jsonl")
            .path
        try
            #"{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris."}, {"role": "user", "content": "And of Italy?"}, {"role": "assistant", "content": "Rome."}]}"#
            .write(toFile: path, atomically: true, encoding: .utf8)
        let ex = try XCTUnwrap(
            try RecordLoading.load(path: path, tokenizer: tok, maxLength: 512, skipBad: false).examples.first)
        // The whole sequence is the template's rendering of the conversation.
        let rendered = try tok.renderChat(
            [
                ChatMessage(role: "system", content: "Be brief."),
                ChatMessage(role: "user", content: "Capital of France?"),
                ChatMessage(role: "assistant", content: "Paris."),
                ChatMessage(role: "user", content: "And of Italy?"),
                ChatMessage(role: "assistant", content: "Rome."),
            ], addGenerationPrompt: false)
        XCTAssertTrue(rendered.contains("<|im_start|>assistant\nRome.<|im_end|>"), rendered)
        XCTAssertEqual(tok.decode(ex.ids.map(Int.init)), rendered)
        // The trained targets, decoded in order, are the two answers with their end tokens — nothing else.
        let targets = ex.labels.filter { $0 != ChunkedCrossEntropy.ignoreIndex }.map(Int.init)
        let trained = tok.decode(targets)
        XCTAssertTrue(trained.hasPrefix("Paris.<|im_end|>"), trained)
        XCTAssertTrue(trained.contains("Rome.<|im_end|>"), trained)
        XCTAssertFalse(
            trained.contains("France") || trained.contains("Italy") || trained.contains("brief")
                || trained.contains("<|im_start|>"), trained)
    }
}
