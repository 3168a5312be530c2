import Foundation

/// Ids of recently encoded words, shared by all callers of one tokenizer. Natural text repeats a
/// small set of words, so this skips most merge loops. Bounded: it is emptied when full.
final class WordCache: @unchecked Sendable {
    private let lock = NSLock()
    private var entries: [[Unicode.Scalar]: [Int32]] = [:]
    private let capacity: Int

    init(capacity: Int = 200_000) { self.capacity = capacity }

    func get(_ word: [Unicode.Scalar]) -> [Int32]? {
        lock.lock()
        defer { lock.unlock() }
        return entries[word]
    }

    func set(_ word: [Unicode.Scalar], _ ids: [Int32]) {
        lock.lock()
        defer { lock.unlock() }
        if entries.count >= capacity { entries.removeAll(keepingCapacity: true) }
        entries[word] = ids
    }
}
