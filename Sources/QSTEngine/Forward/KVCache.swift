import QSTFormat
import QSTKernels
import QSTNN

/// How a `KVCache` stores keys and values.
public enum KVCachePrecision: String, Sendable {
    case float32
    /// IEEE binary16 (`kv_half.h`): half the bytes, rounded once when stored (relative error ≤ 2⁻¹¹). Keys sit in
    /// tiles of 16 tokens per key/value head, so a decode step scores 16 keys per vector.
    case float16
}

/// Keys and values of every layer for `batch` sequences, up to `capacity` tokens each, for incremental
/// decoding. All sequences advance together (`length` rows used); a sequence's padding rows are masked out,
/// and each sequence keeps its own RoPE position (`positions[b]` = real tokens seen so far).
///
/// With a sliding `window` shorter than `capacity` (Mistral) the cache is a ring of `window − 1` rows per
/// sequence: row `a` lives in slot `a mod rows`, older rows are overwritten once no query can see them,
/// so memory stays bounded however long the sequence grows (`WindowedAttention`).
///
/// `precision` `.float16` halves the bytes each decode step reads; it is for plain caches only (not a ring).
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
    public let precision: KVCachePrecision
    /// Head size (the float16 key tiles are laid out per key/value head).
    let headDim: Int
    let keys: [FloatBuffer]
    let values: [FloatBuffer]
    let halfKeys: [Buffer<UInt16>]
    let halfValues: [Buffer<UInt16>]
    let mask: Buffer<UInt8>
    /// The key mask of the tokens being appended, until `commit` moves it into the ring.
    private var pendingMask: [UInt8] = []
    public private(set) var length = 0
    public private(set) var positions: [Int]

    public init(
        layers: Int, batch: Int, capacity: Int, kvDim: Int, window: Int? = nil,
        precision: KVCachePrecision = .float32, headDim: Int? = nil
    ) {
        self.layers = layers; self.batch = batch; self.capacity = capacity; self.kvDim = kvDim
        let ring = window.map { $0 < capacity } ?? false
        self.window = ring ? window : nil
        rows = ring ? max(0, window! - 1) : capacity
        let rows = self.rows
        let hd = headDim ?? kvDim
        precondition(kvDim % hd == 0, "KV cache: head size \(hd) does not divide \(kvDim)")
        precondition(precision == .float32 || !ring, "KV cache: a sliding-window ring is float32 only")
        self.precision = precision; self.headDim = hd
        if precision == .float32 {
            keys = (0..<layers).map { _ in FloatBuffer(count: batch * rows * kvDim) }
            values = (0..<layers).map { _ in FloatBuffer(count: batch * rows * kvDim) }
            halfKeys = []; halfValues = []
        } else {
            let tiles = Int(qst_f16_key_tile_halves(Int64(rows), Int64(hd))) * (kvDim / hd)
            halfKeys = (0..<layers).map { _ in Buffer<UInt16>(count: batch * tiles) }
            halfValues = (0..<layers).map { _ in Buffer<UInt16>(count: batch * rows * kvDim) }
            keys = []; values = []
        }
        mask = Buffer<UInt8>(count: batch * rows)
        positions = [Int](repeating: 0, count: batch)
    }

    /// Bytes held by the cache (the only per-layer activation memory of the engine).
    public var bytes: Int {
        let perLayer =
            precision == .float32
            ? 2 * batch * rows * kvDim * 4 : 2 * ((halfKeys.first?.count ?? 0) + (halfValues.first?.count ?? 0))
        return layers * perLayer + batch * rows
    }

    public func reset() {
        length = 0
        positions = [Int](repeating: 0, count: batch)
        mask.zero()
    }

    /// Drops every row from `length` on, so the next append continues after the first `length` rows (a prompt
    /// that shares only those rows with the previous one). Rows kept are untouched; the positions are recounted
    /// from the kept rows' mask. A ring has overwritten what it would roll back to, so it refuses.
    public func truncate(to length: Int) throws {
        guard window == nil else { throw QSTError("KV cache: a sliding-window ring cannot be truncated") }
        guard (0...self.length).contains(length) else {
            throw QSTError("KV cache: cannot truncate \(self.length) rows to \(length)")
        }
        for b in 0..<batch {
            var kept = 0
            for r in 0..<length where mask[b * rows + r] != 0 { kept += 1 }
            for r in length..<self.length { mask[b * rows + r] = 0 }
            positions[b] = kept
        }
        self.length = length
    }

    /// Layer `layer`'s storage. For a ring, `pending` must be the pointer of `pendingKeyMask` for this forward.
    func slot(layer: Int, pending: UnsafePointer<UInt8>? = nil) -> KVSlot {
        let storage: KVStorage =
            precision == .float32
            ? .float32(keys: keys[layer].pointer, values: values[layer].pointer)
            : .float16(
                keys: halfKeys[layer].pointer, values: halfValues[layer].pointer, headDim: headDim,
                keyStride: Int(qst_f16_key_tile_halves(Int64(rows), Int64(headDim))))
        return KVSlot(
            storage: storage, keyMask: mask.constPointer, capacity: rows, pastLength: length, window: window,
            newKeyMask: pending)
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
