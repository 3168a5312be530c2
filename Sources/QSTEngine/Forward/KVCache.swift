import QSTFormat
import QSTNN

/// Keys and values of every layer for `batch` sequences, up to `capacity` tokens each, for incremental
/// decoding. All sequences advance together (`length` rows used); a sequence's padding rows are masked out,
/// and each sequence keeps its own RoPE position (`positions[b]` = real tokens seen so far).
///
/// With a sliding `window` shorter than `capacity` (Mistral) the cache is a ring of `window − 1` rows per
/// sequence: row `a` lives in slot `a mod rows`, older rows are overwritten once no query can see them,
/// so memory stays bounded however long the sequence grows (`WindowedAttention`).
public final class KVCache {
    public let layers: Int
    public let batch: Int
    /// Most rows (tokens per sequence, padding included) the cache accepts in total.
    public let capacity: Int
    public let kvDim: Int
    /// The sliding window when the cache is a ring (nil: plain rows `0..<capacity`).
    public let window: Int?
    /// Rows stored per sequence: `capacity`, or `window − 1` for a ring.
    public let rows: Int
    let keys: [FloatBuffer]
    let values: [FloatBuffer]
    let mask: Buffer<UInt8>
    /// The key mask of the tokens being appended, until `commit` moves it into the ring.
    private var pendingMask: [UInt8] = []
    public private(set) var length = 0
    public private(set) var positions: [Int]

    public init(layers: Int, batch: Int, capacity: Int, kvDim: Int, window: Int? = nil) {
        self.layers = layers; self.batch = batch; self.capacity = capacity; self.kvDim = kvDim
        let ring = window.map { $0 < capacity } ?? false
        self.window = ring ? window : nil
        rows = ring ? max(0, window! - 1) : capacity
        let rows = self.rows
        keys = (0..<layers).map { _ in FloatBuffer(count: batch * rows * kvDim) }
        values = (0..<layers).map { _ in FloatBuffer(count: batch * rows * kvDim) }
        mask = Buffer<UInt8>(count: batch * rows)
        positions = [Int](repeating: 0, count: batch)
    }

    /// Bytes held by the cache (the only per-layer activation memory of the engine).
    public var bytes: Int { 2 * layers * batch * rows * kvDim * 4 + batch * rows }

    public func reset() {
        length = 0
        positions = [Int](repeating: 0, count: batch)
        mask.zero()
    }

    /// Layer `layer`'s storage. For a ring, `pending` must be the pointer of `pendingKeyMask` for this forward.
    func slot(layer: Int, pending: UnsafePointer<UInt8>? = nil) -> KVSlot {
        KVSlot(
            keys: keys[layer].pointer, values: values[layer].pointer, keyMask: mask.constPointer,
            capacity: rows, pastLength: length, window: window, newKeyMask: pending)
    }

    /// The appended tokens' key mask `[batch·newTokens]` (ring caches only; plain caches hold it in `mask`).
    var pendingKeyMask: [UInt8] { pendingMask }

    /// Reserves rows for `newTokens` tokens per sequence (`valid [batch·newTokens]`, nonzero = real token)
    /// and returns each new token's RoPE position.
    func append(newTokens: Int, valid: [UInt8]) throws -> [Int32] {
        guard length + newTokens <= capacity else {
            throw QSTError("KV cache full: \(length) + \(newTokens) tokens exceed its capacity \(capacity)")
        }
        var pos = [Int32](repeating: 0, count: batch * newTokens)
        if window != nil { pendingMask = valid.map { $0 != 0 ? 1 : 0 } }
        for b in 0..<batch {
            for t in 0..<newTokens {
                let ok = valid[b * newTokens + t] != 0
                if window == nil { mask[b * capacity + length + t] = ok ? 1 : 0 }
                pos[b * newTokens + t] = Int32(max(0, ok ? positions[b] : positions[b] - 1))
                if ok { positions[b] += 1 }
            }
        }
        return pos
    }

    func commit(newTokens: Int) {
        if window != nil, rows > 0 {
            for b in 0..<batch {
                for t in max(0, newTokens - rows)..<newTokens {
                    mask[b * rows + (length + t) % rows] = pendingMask[b * newTokens + t]
                }
            }
        }
        length += newTokens
    }
}
