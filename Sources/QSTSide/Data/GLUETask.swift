import Foundation
import QSTFormat

/// A GLUE classification task as a next-token problem: a prompt template, one label word per class
/// (the loss is on the label word's first token; accuracy compares the label tokens' logits).
public struct GLUETask: Sendable {
    public let name: String
    /// Label words in class order (class 0 first).
    public let labelWords: [String]
    /// Builds the prompt from a TSV row (column name → text).
    let prompt: @Sendable ([String: String]) -> String
    /// Columns the prompt needs, and the label column.
    let textColumns: [String]
    let labelColumn: String
    /// Maps the label column's text to a class index.
    let classOf: @Sendable (String) -> Int?
    /// CoLA's files have no header; these are its column names.
    let fixedColumns: [String]?

    public static let names = ["sst2", "rte", "mrpc", "cola"]

    public static func named(_ name: String) throws -> GLUETask {
        let binary: @Sendable (String) -> Int? = { s in s == "0" ? 0 : (s == "1" ? 1 : nil) }
        switch name.lowercased() {
        case "sst2", "sst-2":
            return GLUETask(
                name: "sst2", labelWords: [" negative", " positive"],
                prompt: { "Review: \(clean($0["sentence"]))\nSentiment:" },
                textColumns: ["sentence"], labelColumn: "label", classOf: binary, fixedColumns: nil)
        case "rte":
            return GLUETask(
                name: "rte", labelWords: [" yes", " no"],
                prompt: { "\(clean($0["sentence1"]))\nQuestion: \(clean($0["sentence2"])) Yes or no?\nAnswer:" },
                textColumns: ["sentence1", "sentence2"], labelColumn: "label",
                classOf: { $0 == "entailment" ? 0 : ($0 == "not_entailment" ? 1 : nil) }, fixedColumns: nil)
        case "mrpc":
            return GLUETask(
                name: "mrpc", labelWords: [" no", " yes"],
                prompt: {
                    "Sentence 1: \(clean($0["#1 String"]))\nSentence 2: \(clean($0["#2 String"]))\n"
                        + "Question: Do both sentences mean the same thing?\nAnswer:"
                },
                textColumns: ["#1 String", "#2 String"], labelColumn: "Quality", classOf: binary,
                fixedColumns: nil)
        case "cola":
            return GLUETask(
                name: "cola", labelWords: [" no", " yes"],
                prompt: { "Sentence: \(clean($0["sentence"]))\nQuestion: Is this sentence grammatical?\nAnswer:" },
                textColumns: ["sentence"], labelColumn: "label", classOf: binary,
                fixedColumns: ["source", "label", "original_label", "sentence"])
        default:
            throw QSTError("unknown task '\(name)'; known: \(names.joined(separator: ", "))")
        }
    }

    private static func clean(_ s: String?) -> String { (s ?? "").trimmingCharacters(in: .whitespaces) }

    /// The first token of each label word; they must differ so the classes can be told apart.
    public func labelTokens(_ tok: ExampleTokenizer) throws -> [Int32] {
        let ids = labelWords.map { tok.encodeIDs($0, addSpecialTokens: false).first ?? -1 }
        guard !ids.contains(-1), Set(ids).count == ids.count else {
            throw QSTError("task \(name): label words \(labelWords) do not start with distinct tokens (\(ids))")
        }
        return ids
    }

    /// Reads a GLUE TSV file into examples: prompt tokens, then the label word's first token as the target.
    /// With `head`, the prompt alone, its last token labelled with the class index (classification head).
    public func load(
        path: String, tokenizer tok: ExampleTokenizer, maxLength: Int, skipBad: Bool,
        head: Bool = false
    ) throws -> LoadedExamples {
        guard let data = FileManager.default.contents(atPath: path) else { throw QSTError.file(path, "cannot read") }
        var text = String(decoding: data, as: UTF8.self)
        // The GLUE MRPC files start with a UTF-8 byte-order mark.
        if text.hasPrefix("\u{FEFF}") { text.removeFirst() }
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map {
            $0.hasSuffix("\r") ? String($0.dropLast()) : String($0)
        }
        if lines.last == "" { lines.removeLast() }
        // The head needs no label words (a tokenizer may not tell them apart).
        let labelIDs = head ? ((try? labelTokens(tok)) ?? []) : try labelTokens(tok)
        var columns = fixedColumns ?? []
        var first = 0
        if fixedColumns == nil {
            guard let header = lines.first else { throw QSTError.file(path, "empty file") }
            columns = header.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            for c in textColumns + [labelColumn] where !columns.contains(c) {
                throw QSTError.file(path, "line 1: header has no column '\(c)' (task \(name); header: \(columns))")
            }
            first = 1
        }
        var out = LoadedExamples(
            examples: [], skippedBad: 0, truncated: 0, droppedTooLong: 0, labelTokens: labelIDs.isEmpty ? nil : labelIDs
        )
        for k in first..<lines.count {
            let fields = lines[k].split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            var row: [String: String] = [:]
            for (i, c) in columns.enumerated() where i < fields.count { row[c] = fields[i] }
            let problem: String?
            if fields.count < columns.count {
                problem = "has \(fields.count) columns, expected \(columns.count)"
            } else if classOf(row[labelColumn] ?? "") == nil {
                problem = "label '\(row[labelColumn] ?? "")' is not one of this task's labels"
            } else {
                problem = nil
            }
            if let problem {
                if skipBad { out.skippedBad += 1; continue }
                throw QSTError.file(path, "line \(k + 1): \(problem) (use --skip-bad to skip such records)")
            }
            let cls = classOf(row[labelColumn] ?? "") ?? 0
            if head {
                let ids = tok.encodeIDs(prompt(row), addSpecialTokens: true)
                var labels = [Int32](repeating: -100, count: ids.count)
                labels[ids.count - 1] = Int32(cls)
                var ex = TrainingExample(ids: ids, labels: labels, classLabel: cls, answerPosition: ids.count - 1)
                if ex.truncate(to: maxLength) { out.truncated += 1 }
                out.examples.append(ex)
                continue
            }
            let ids = tok.encodeIDs(prompt(row), addSpecialTokens: true) + [labelIDs[cls]]
            var labels = [Int32](repeating: -100, count: ids.count)
            labels[ids.count - 2] = labelIDs[cls]
            var ex = TrainingExample(ids: ids, labels: labels, classLabel: cls, answerPosition: ids.count - 2)
            if ex.truncate(to: maxLength) { out.truncated += 1 }
            out.examples.append(ex)
        }
        return out
    }
}
