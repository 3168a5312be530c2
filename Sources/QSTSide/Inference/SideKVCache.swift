import Foundation
import QSTCore
import QSTFormat
import QSTKernels
import QSTNN

/// The side network's own keys and values (the reference keeps a second cache beside the base's), per
/// side layer at the side's width. Stored per head and transposed, `[batch, kvHeads, headDim, capacity]`,
/// so attention's loops run along contiguous positions; a `[batch, capacity]` key mask and each sequence's
/// next RoPE position. Positions follow the base `KVCache`'s rule: padding rows do not advance a sequence.
public final class SideKVCache {
    public let layers: Int
    public let batch: Int
    public let capacity: Int
    public let kvHeads: Int
    public let headDim: Int
    let keys: [FloatBuffer]
    let values: [FloatBuffer]
    var mask: [UInt8]
    /// Whether a sequence has any padding row (then attention must consult the mask).
    var padded: [Bool]
    public private(set) var length = 0
    public private(set) var positions: [Int]

    public init(layers: Int, batch: Int, capacity: Int, kvHeads: Int, headDim: Int) {
        self.layers = layers; self.batch = batch; self.capacity = capacity; self.kvHeads = kvHeads;
        self.headDim = headDim
        keys = (0..<layers).map { _ in FloatBuffer(count: batch * capacity * kvHeads * headDim) }
        values = (0..<layers).map { _ in FloatBuffer(count: batch * capacity * kvHeads * headDim) }
        mask = [UInt8](repeating: 0, count: batch * capacity)
        padded = [Bool](repeating: false, count: batch)
        positions = [Int](repeating: 0, count: batch)
    }

    public var bytes: Int { 2 * layers * batch * capacity * kvHeads * headDim * 4 + batch * capacity }

    public func reset() {
        length = 0
        positions = [Int](repeating: 0, count: batch)
        padded = [Bool](repeating: false, count: batch)
        for i in mask.indices { mask[i] = 0 }
    }

    /// Drops every row from `length` on (as `KVCache.truncate(to:)`): positions and padding are recounted from
    /// the kept rows.
    public func truncate(to length: Int) throws {
        guard (0...self.length).contains(length) else {
            throw QSTError("side KV cache: cannot truncate \(self.length) rows to \(length)")
        }
        for b in 0..<batch {
            var kept = 0
            for r in 0..<length where mask[b * capacity + r] != 0 { kept += 1 }
            for r in length..<self.length { mask[b * capacity + r] = 0 }
            positions[b] = kept
            padded[b] = kept < length
        }
        self.length = length
    }

    /// Marks `newTokens` rows per sequence (`valid` nonzero = real token) and returns their positions.
    func append(newTokens: Int, valid: UnsafePointer<UInt8>) throws -> [Int32] {
        guard length + newTokens <= capacity else {
            throw QSTError("side KV cache full: \(length) + \(newTokens) tokens exceed its capacity \(capacity)")
        }
        var pos = [Int32](repeating: 0, count: batch * newTokens)
        for b in 0..<batch {
            for t in 0..<newTokens {
                let ok = valid[b * newTokens + t] != 0
                mask[b * capacity + length + t] = ok ? 1 : 0
                if !ok { padded[b] = true }
                pos[b * newTokens + t] = Int32(max(0, ok ? positions[b] : positions[b] - 1))
                if ok { positions[b] += 1 }
            }
        }
        return pos
    }

    /// Writes the step's rotated keys and values `[batch·newTokens, kvHeads·headDim]` of `layer` at rows
    /// `length…` (before `commit`).
    func store(layer: Int, k: UnsafePointer<Float>, v: UnsafePointer<Float>, newTokens: Int) {
        let K = kvHeads, hd = headDim, kw = K * hd, cap = capacity
        let kd = keys[layer].pointer, vd = values[layer].pointer
        for b in 0..<batch {
            for t in 0..<newTokens {
                let src = (b * newTokens + t) * kw, col = length + t
                for g in 0..<K {
                    let base = ((b * K + g) * hd) * cap + col
                    for d in 0..<hd {
                        kd[base + d * cap] = k[src + g * hd + d]
                        vd[base + d * cap] = v[src + g * hd + d]
                    }
                }
            }
        }
    }

    func commit(newTokens: Int) { length += newTokens }
}

/// Causal GQA attention of the new queries over a side cache, along contiguous cached positions; the
/// (sequence, head) pairs run in parallel only when there is enough work (prefill).
enum SideCachedAttention {
    static func forward(
        out: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>, cache: SideKVCache, layer: Int,
        newTokens: Int, heads H: Int, threads: Int
    ) {
        let batch = cache.batch, cap = cache.capacity, past = cache.length
        let K = cache.kvHeads, hd = cache.headDim, ldq = H * hd, group = H / K
        let scale = 1 / Float(hd).squareRoot()
        let kp = SendablePointer(cache.keys[layer].pointer), vp = SendablePointer(cache.values[layer].pointer)
        let qp = SendablePointer(q), op = SendablePointer(out)
        let padded = cache.padded
        let total = past + newTokens
        let work = batch * H * newTokens * total * hd
        cache.mask.withUnsafeBufferPointer { mb in
            let mp = SendablePointer(mb.baseAddress!)
            // (sequence, head) pairs u0..<u1 with `scores` room for `total` floats.
            @Sendable func pairs(_ u0: Int, _ u1: Int, _ scores: UnsafeMutablePointer<Float>) {
                for u in u0..<u1 {
                    let b = u / H, h = u % H, g = h / group
                    let mask = mp + b * cap
                    let kt = kp + ((b * K + g) * hd) * cap, vt = vp + ((b * K + g) * hd) * cap
                    for t in 0..<newTokens {
                        let qi = qp + (b * newTokens + t) * ldq + h * hd
                        let oi = op + (b * newTokens + t) * ldq + h * hd
                        // QSTKernels' loop over the transposed keys and values (vector exp as the training side
                        // attention); all keys masked gives zeros.
                        let rc = qst_side_decode_attention(
                            oi.base, qi.base, kt.base, vt.base, Int64(cap), Int64(past + t + 1),
                            Int64(hd), scale, padded[b] ? UnsafePointer(mask.base) : nil,
                            scores, Int32(QST_VEC_AUTO.rawValue))
                        precondition(rc == 0, "qst_side_decode_attention refused \(past + t + 1) keys")
                    }
                }
            }
            // A decode step (one query per head, a few dozen keys) is far too little work to hand to the
            // workers: run it here, without the parallel loop's closure and per-call buffers.
            guard work > (1 << 16), threads > 1 else {
                withUnsafeTemporaryAllocation(of: Float.self, capacity: max(1, total)) {
                    pairs(0, batch * H, $0.baseAddress!)
                }
                return
            }
            Parallel.forRanges(batch * H, threads: threads, minChunk: 1) { u0, u1 in
                let scores = UnsafeMutablePointer<Float>.allocate(capacity: max(1, total))
                defer { scores.deallocate() }
                pairs(u0, u1, scores)
            }
        }
    }
}
