/// Turns generated ids into text as they arrive, yielding text only once it is complete UTF-8
/// (a multi-byte character split over several byte tokens is held back until its last byte).
/// It decodes a short window of recent ids and emits what the newest id added, as HF's
/// `DecodeStream` does, so decoders that depend on neighbours (Metaspace's leading space) agree
/// with decoding the whole sequence at once.
public struct StreamingDecoder: Sendable {
    private let tokenizer: Tokenizer
    private let skipSpecialTokens: Bool
    private var ids: [Int] = []
    private var prefix = ""
    private var prefixIndex = 0

    public init(tokenizer: Tokenizer, skipSpecialTokens: Bool = true) {
        self.tokenizer = tokenizer
        self.skipSpecialTokens = skipSpecialTokens
    }

    /// The text the id completes ("" while a character is still incomplete).
    public mutating func push(_ id: Int) -> String {
        ids.append(id)
        let text = tokenizer.decode(ids, skipSpecialTokens: skipSpecialTokens)
        guard text.utf8.count > prefix.utf8.count, !text.hasSuffix("\u{FFFD}") else { return "" }
        let newText: String
        if text.hasPrefix(prefix) {
            newText = String(decoding: text.utf8.dropFirst(prefix.utf8.count), as: UTF8.self)
        } else {
            // The window re-decoded differently; emit what differs from what was shown.
            let common = zip(text.utf8, prefix.utf8).prefix { $0 == $1 }.count
            newText = String(decoding: text.utf8.dropFirst(common), as: UTF8.self)
        }
        let newPrefixIndex = ids.count - prefixIndex
        ids.removeFirst(prefixIndex)
        prefix = tokenizer.decode(ids, skipSpecialTokens: skipSpecialTokens)
        prefixIndex = newPrefixIndex
        return newText
    }

    /// Whatever is still held back (an incomplete character decodes to U+FFFD).
    public mutating func finish() -> String {
        let text = tokenizer.decode(ids, skipSpecialTokens: skipSpecialTokens)
        defer {
            ids.removeAll()
            prefix = ""
            prefixIndex = 0
        }
        guard text.utf8.count > prefix.utf8.count else { return "" }
        return String(decoding: text.utf8.dropFirst(prefix.utf8.count), as: UTF8.self)
    }
}
