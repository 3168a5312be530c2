import Foundation
import QSTFormat
import QSTNN
import QSTTokenizer

/// What the data loaders need from a tokenizer (the real `Tokenizer` conforms; tests use a toy one).
public protocol ExampleTokenizer {
    /// Token ids of `text`; `addSpecialTokens` adds what the tokenizer's post-processor adds (e.g. BOS).
    func encodeIDs(_ text: String, addSpecialTokens: Bool) -> [Int32]
    var eosTokenID: Int32? { get }
    /// Renders chat messages with the model's template.
    func renderChat(_ messages: [ChatMessage], addGenerationPrompt: Bool) throws -> String
}

extension Tokenizer: ExampleTokenizer {
    public func encodeIDs(_ text: String, addSpecialTokens: Bool) -> [Int32] {
        encode(text, addSpecialTokens: addSpecialTokens).map { Int32($0) }
    }
    public var eosTokenID: Int32? { eosID.map { Int32($0) } }
    public func renderChat(_ messages: [ChatMessage], addGenerationPrompt: Bool) throws -> String {
        try chatFormat(override: nil).render(messages: messages, addGenerationPrompt: addGenerationPrompt)
    }
}

/// One tokenised training or evaluation sequence.
public struct TrainingExample: Sendable, Equatable {
    public var ids: [Int32]
    /// `labels[t]` is the token position `t` must predict, or `ChunkedCrossEntropy.ignoreIndex`.
    public var labels: [Int32]
    /// Classification: the class index and the position whose next-token logits decide it.
    public var classLabel: Int?
    public var answerPosition: Int?
    /// Regression (classification head with K = 1): the target value, read at `answerPosition`.
    public var regressionTarget: Float?

    public init(
        ids: [Int32], labels: [Int32], classLabel: Int? = nil, answerPosition: Int? = nil,
        regressionTarget: Float? = nil
    ) {
        self.ids = ids; self.labels = labels; self.classLabel = classLabel; self.answerPosition = answerPosition
        self.regressionTarget = regressionTarget
    }

    /// Builds an example from text segments, each either trained on (`true`) or context only.
    /// Every token of a trained segment is a target of the position before it.
    public static func fromSegments(_ segments: [(ids: [Int32], trained: Bool)]) -> TrainingExample {
        var ids: [Int32] = [], trainedFlags: [Bool] = []
        for s in segments { ids += s.ids; trainedFlags += Array(repeating: s.trained, count: s.ids.count) }
        var labels = [Int32](repeating: ChunkedCrossEntropy.ignoreIndex, count: ids.count)
        for t in 0..<max(0, ids.count - 1) where trainedFlags[t + 1] { labels[t] = ids[t + 1] }
        return TrainingExample(ids: ids, labels: labels)
    }

    public var labelledCount: Int { labels.reduce(0) { $1 == ChunkedCrossEntropy.ignoreIndex ? $0 : $0 + 1 } }

    /// Cuts to `maxLength` tokens. Classification examples drop prompt tokens from the front (the question
    /// and answer stay); others keep their beginning. Returns whether anything was cut.
    public mutating func truncate(to maxLength: Int) -> Bool {
        guard ids.count > maxLength else { return false }
        if let pos = answerPosition {
            let drop = ids.count - maxLength
            ids.removeFirst(drop); labels.removeFirst(drop)
            answerPosition = pos - drop
        } else {
            ids.removeLast(ids.count - maxLength); labels.removeLast(labels.count - maxLength)
            if !labels.isEmpty { labels[labels.count - 1] = ChunkedCrossEntropy.ignoreIndex }
        }
        return true
    }
}

/// Examples loaded from one file, and what was skipped or cut on the way.
public struct LoadedExamples: Sendable {
    public var examples: [TrainingExample]
    public var skippedBad: Int
    public var truncated: Int
    /// Truncated examples with no trained token left (their prompt alone fills the length limit).
    public var droppedTooLong: Int = 0
    /// For classification tasks: the label tokens, in class order.
    public var labelTokens: [Int32]?
}
