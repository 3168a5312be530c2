import QSTCore
import QSTEngine
import QSTNN

/// The last row's head input of one prompt after another, where consecutive prompts share a long prefix: the
/// k-shot examples of an MMLU subject are the same for each of its questions (~500 of a prompt's ~600 tokens).
/// It keeps the previous prompt's keys and values and runs only the tokens after the longest token prefix the
/// new prompt shares with it. Attention is causal, so the kept rows are exactly what the prefix's own forward
/// wrote: the result is the prompt's forward, computed as a prefill continued by a second prefill.
public final class PrefixReusingScorer {
    /// Runs tokens after what the cache holds and returns the head input of the last of them.
    public typealias Extend = ([Int32]) throws -> [Float]

    let extend: Extend
    let truncate: (Int) throws -> Void
    /// Most tokens the cache holds.
    public let capacity: Int
    /// false: every prompt runs whole (from an emptied cache), for comparison.
    public let reuse: Bool
    /// The tokens the cache holds (empty after a failure, so nothing half-written is reused).
    private var held: [Int32] = []
    /// Tokens run through the model, and tokens taken from the cache instead.
    public private(set) var tokensRun = 0
    public private(set) var tokensReused = 0

    public init(capacity: Int, reuse: Bool = true, extend: @escaping Extend, truncate: @escaping (Int) throws -> Void) {
        self.capacity = capacity; self.reuse = reuse; self.extend = extend; self.truncate = truncate
    }

    /// A frozen model alone; its cache is float32 on every path, as a forward without a cache keeps keys.
    public convenience init(model: FrozenModel, capacity: Int, reuse: Bool = true) {
        let cache = model.makeCache(batch: 1, capacity: capacity, float32: true)
        let e = model.headInputSize
        self.init(
            capacity: capacity, reuse: reuse,
            extend: { ids in
                let h = try model.forward(ids: ids, batch: 1, newTokens: ids.count, cache: cache)
                return Array(UnsafeBufferPointer(start: h.constPointer + (ids.count - 1) * e, count: e))
            },
            truncate: { try cache.truncate(to: $0) })
    }

    /// The head input of the last token of `ids` (at least one token, at most `capacity`).
    public func lastHeadInput(_ ids: [Int32]) throws -> [Float] {
        guard !ids.isEmpty, ids.count <= capacity else {
            throw QSTError("prefix scorer: a prompt of \(ids.count) tokens (1...\(capacity) allowed)")
        }
        // At least the last token runs: its row is the one wanted.
        var shared = 0
        if reuse {
            let limit = min(held.count, ids.count - 1)
            while shared < limit && held[shared] == ids[shared] { shared += 1 }
        }
        held = []
        try truncate(shared)
        let out = try extend(Array(ids[shared...]))
        held = ids
        tokensRun += ids.count - shared
        tokensReused += shared
        return out
    }
}
