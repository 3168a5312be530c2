import Foundation
import QSTEngine
import QSTFormat
import QSTNN
import QSTTokenizer

/// One MMLU-style question: four choices, the right one's index.
public struct ChoiceQuestion: Sendable, Equatable {
    public var question: String
    public var choices: [String]
    public var answer: Int
}

/// MMLU in the layout `DIR/{dev,test}/SUBJECT_{dev,test}.csv` with header `question,choice0..3,answer` (0–3).
public enum MMLUData {
    public static func subjects(in dir: String) throws -> [String] {
        let test = (dir as NSString).appendingPathComponent("test")
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: test) else {
            throw QSTError.file(test, "no MMLU test folder")
        }
        return names.filter { $0.hasSuffix("_test.csv") }.map { String($0.dropLast("_test.csv".count)) }.sorted()
    }

    public static func load(dir: String, subject: String, split: String) throws -> [ChoiceQuestion] {
        let path = (dir as NSString).appendingPathComponent("\(split)/\(subject)_\(split).csv")
        guard let data = FileManager.default.contents(atPath: path) else {
            throw QSTError.file(path, "cannot read (unknown subject '\(subject)'?)")
        }
        let rows = try CSVReader.parse(String(decoding: data, as: UTF8.self), origin: path)
        guard let header = rows.first, header == ["question", "choice0", "choice1", "choice2", "choice3", "answer"]
        else {
            throw QSTError.file(path, "line 1: expected header question,choice0,choice1,choice2,choice3,answer")
        }
        return try rows.dropFirst().enumerated().map { i, r in
            guard r.count == 6, let a = Int(r[5]), (0...3).contains(a) else {
                throw QSTError.file(path, "record \(i + 1): expected 6 fields with answer 0-3")
            }
            return ChoiceQuestion(question: r[0], choices: Array(r[1...4]), answer: a)
        }
    }
}

public struct SubjectAccuracy: Codable, Sendable {
    public var subject: String
    public var questions: Int
    public var correct: Int
    public var accuracy: Double
    /// The chosen answer (0–3) of each test question, in file order.
    public var predictions: [Int] = []
}

public struct ChoiceResult: Codable, Sendable {
    public var questions: Int
    public var correct: Int
    /// Micro-averaged over all questions.
    public var accuracy: Double
    public var subjects: [SubjectAccuracy]
    public var seconds: Double
    /// Prompt tokens run through the model, and tokens whose keys and values were reused from the prompt before.
    public var tokensRun = 0
    public var tokensReused = 0
}

/// Accuracy by comparing the logits of the answer letters after "Answer:" (the original MMLU protocol).
public struct MultipleChoiceEvaluator {
    public static let letters = ["A", "B", "C", "D"]
    public let model: FrozenModel
    public let tokenizer: Tokenizer
    public let letterIDs: [Int32]
    public let maxContext: Int
    /// Runs the prompts (the frozen model's, or a side network's head inputs), reusing each subject's shots.
    public let scorer: PrefixReusingScorer

    /// `scorer` nil: the frozen model alone, with prefix reuse.
    public init(model: FrozenModel, tokenizer: Tokenizer, maxContext: Int = 2048, scorer: PrefixReusingScorer? = nil)
        throws
    {
        self.model = model; self.tokenizer = tokenizer; self.maxContext = maxContext
        self.scorer = scorer ?? PrefixReusingScorer(model: model, capacity: maxContext)
        guard self.scorer.capacity >= maxContext else {
            throw QSTError(
                "multiple choice: the scorer holds \(self.scorer.capacity) tokens, prompts up to \(maxContext)")
        }
        // The answer follows "Answer:" as " A"; fall back to the bare letter if " A" is not one token.
        letterIDs = try Self.letters.map { l in
            let spaced = tokenizer.encode(" " + l)
            if spaced.count == 1 { return Int32(spaced[0]) }
            let bare = tokenizer.encode(l)
            guard bare.count == 1 else { throw QSTError("tokenizer: answer letter '\(l)' is not a single token") }
            return Int32(bare[0])
        }
    }

    public static func format(_ q: ChoiceQuestion, withAnswer: Bool) -> String {
        var s = q.question.trimmingCharacters(in: .whitespacesAndNewlines)
        for (i, c) in q.choices.enumerated() { s += "\n\(letters[i]). \(c)" }
        s += "\nAnswer:"
        if withAnswer { s += " \(letters[q.answer])\n\n" }
        return s
    }

    public static func prompt(subject: String, shots: [ChoiceQuestion], question: ChoiceQuestion) -> String {
        let name = subject.replacingOccurrences(of: "_", with: " ")
        var s = "The following are multiple choice questions (with answers) about \(name).\n\n"
        for q in shots { s += format(q, withAnswer: true) }
        return s + format(question, withAnswer: false)
    }

    /// The logits of the four answer letters; shots are dropped from the end until the prompt fits `maxContext`.
    public func scores(subject: String, shots: [ChoiceQuestion], question: ChoiceQuestion) throws -> [Float] {
        var k = shots.count
        var ids = tokenizer.encode(Self.prompt(subject: subject, shots: Array(shots.prefix(k)), question: question))
            .map(Int32.init)
        while ids.count > maxContext && k > 0 {
            k -= 1
            ids = tokenizer.encode(Self.prompt(subject: subject, shots: Array(shots.prefix(k)), question: question))
                .map(Int32.init)
        }
        if ids.count > maxContext { ids = Array(ids.suffix(maxContext)) }
        let h = try scorer.lastHeadInput(ids)
        var scores = [Float](repeating: 0, count: letterIDs.count)
        try h.withUnsafeBufferPointer { hp in
            try scores.withUnsafeMutableBufferPointer { out in
                try ChunkedCrossEntropy.candidateLogits(
                    out: out.baseAddress!, hidden: hp.baseAddress!, n: 1, head: model.headRows(), candidates: letterIDs)
            }
        }
        return scores
    }

    /// The predicted choice index (the first of equal highest logits).
    public func predict(subject: String, shots: [ChoiceQuestion], question: ChoiceQuestion) throws -> Int {
        let s = try scores(subject: subject, shots: shots, question: question)
        return s.indices.max { s[$0] < s[$1] } ?? 0
    }

    public func evaluate(
        dir: String, subjects: [String], shots: Int, limit: Int?,
        progress: (String, Int, Int) -> Void = { _, _, _ in }
    ) throws -> ChoiceResult {
        let start = Date()
        let run0 = scorer.tokensRun, reused0 = scorer.tokensReused
        var per: [SubjectAccuracy] = []
        for subject in subjects {
            let dev = shots > 0 ? Array(try MMLUData.load(dir: dir, subject: subject, split: "dev").prefix(shots)) : []
            var test = try MMLUData.load(dir: dir, subject: subject, split: "test")
            if let limit { test = Array(test.prefix(limit)) }
            var correct = 0, predictions: [Int] = []
            for (i, q) in test.enumerated() {
                let p = try predict(subject: subject, shots: dev, question: q)
                predictions.append(p)
                if p == q.answer { correct += 1 }
                progress(subject, i + 1, test.count)
            }
            per.append(
                SubjectAccuracy(
                    subject: subject, questions: test.count, correct: correct,
                    accuracy: Double(correct) / Double(max(1, test.count)), predictions: predictions))
        }
        let q = per.reduce(0) { $0 + $1.questions }, c = per.reduce(0) { $0 + $1.correct }
        return ChoiceResult(
            questions: q, correct: c, accuracy: Double(c) / Double(max(1, q)), subjects: per,
            seconds: Date().timeIntervalSince(start), tokensRun: scorer.tokensRun - run0,
            tokensReused: scorer.tokensReused - reused0)
    }
}
