import QSTFormat
import QSTNN

/// Keys and values of every layer for `batch` sequences, up to `capacity` tokens each, for incremental
/// decoding. All sequences advance together (`length` rows used); a sequence's padding rows are masked out,
/// and each sequence keeps its own RoPE position (`positions[b]` = real tokens seen so far).
public final class KVCache {
    public let layers: Int
    public let batch: Int
    public let capacity: Int
    public let kvDim: Int
    let keys: [FloatBuffer]
    let values: [FloatBuffer]
    let mask: Buffer<UInt8>
    public private(set) var length = 0
    public private(set) var positions: [Int]

    public init(layers: Int, batch: Int, capacity: Int, kvDim: Int) {
        self.layers = layers; self.batch = batch; self.capacity = capacity; self.kvDim = kvDim
        keys = (0..<layers).map { _ in FloatBuffer(count: batch * capacity * kvDim) }
        values = (0..<layers).map { _ in FloatBuffer(count: batch * capacity * kvDim) }
        mask = Buffer<UInt8>(count: batch * capacity)
        positions = [Int](repeating: 0, count: batch)
    }

    /// Bytes held by the cache (the only per-layer activation memory of the engine).
    public var bytes: Int { 2 * layers * batch * capacity * kvDim * 4 + batch * capacity }

    public func reset() {
        length = 0
        positions = [Int](repeating: 0, count: batch)
        mask.zero()
    }

    func slot(layer: Int) -> KVSlot {
        KVSlot(keys: keys[layer].pointer, values: values[layer].pointer, keyMask: mask.constPointer,
               capacity: capacity, pastLength: length)
    }

    /// Reserves rows for `newTokens` tokens per sequence (`valid [batch·newTokens]`, nonzero = real token)
    /// and returns each new token's RoPE position.
    func append(newTokens: Int, valid: [UInt8]) throws -> [Int32] {
        guard length + newTokens <= capacity else {
            throw QSTError("KV cache full: \(length) + \(newTokens) tokens exceed its capacity \(capacity)")
        }
        var pos = [Int32](repeating: 0, count: batch * newTokens)
        for b in 0..<batch {
            for t in 0..<newTokens {
                let ok = valid[b * newTokens + t] != 0
                mask[b * capacity + length + t] = ok ? 1 : 0
                pos[b * newTokens + t] = Int32(max(0, ok ? positions[b] : positions[b] - 1))
                if ok { positions[b] += 1 }
            }
        }
        return pos
    }

    func commit(newTokens: Int) { length += newTokens }
}
