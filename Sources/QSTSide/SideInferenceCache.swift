import Foundation
import QSTCore
import QSTFormat
import QSTNN

/// The side network's own keys and values (the reference keeps a second cache beside the base's):
/// `[batch, capacity, kvDim]` per side layer at the side's width, a `[batch, capacity]` key mask and each
/// sequence's next RoPE position. Positions follow the same rule as the base's `KVCache`: padding rows
/// do not advance a sequence.
public final class SideKVCache {
    public let layers: Int
    public let batch: Int
    public let capacity: Int
    public let kvDim: Int
    let keys: [FloatBuffer]
    let values: [FloatBuffer]
    var mask: [UInt8]
    public private(set) var length = 0
    public private(set) var positions: [Int]

    public init(layers: Int, batch: Int, capacity: Int, kvDim: Int) {
        self.layers = layers; self.batch = batch; self.capacity = capacity; self.kvDim = kvDim
        keys = (0..<layers).map { _ in FloatBuffer(count: batch * capacity * kvDim) }
        values = (0..<layers).map { _ in FloatBuffer(count: batch * capacity * kvDim) }
        mask = [UInt8](repeating: 0, count: batch * capacity)
        positions = [Int](repeating: 0, count: batch)
    }

    public var bytes: Int { 2 * layers * batch * capacity * kvDim * 4 + batch * capacity }

    public func reset() {
        length = 0
        positions = [Int](repeating: 0, count: batch)
        for i in mask.indices { mask[i] = 0 }
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
                pos[b * newTokens + t] = Int32(max(0, ok ? positions[b] : positions[b] - 1))
                if ok { positions[b] += 1 }
            }
        }
        return pos
    }

    func commit(newTokens: Int) { length += newTokens }
}

/// Causal GQA attention of new queries over a side cache. Heads are tiny (d/(r·heads)), so plain loops;
/// (sequence, head) pairs run in parallel only when there is enough work (prefill).
enum SideCachedAttention {
    static func forward(out: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>, cache: SideKVCache, layer: Int,
                        newTokens: Int, heads H: Int, kvHeads K: Int, headDim hd: Int, threads: Int) {
        let batch = cache.batch, cap = cache.capacity, past = cache.length
        let ldq = H * hd, ldk = K * hd, group = H / K
        let scale = 1 / Float(hd).squareRoot()
        let kp = QSTNN.SendablePointer(cache.keys[layer].pointer), vp = QSTNN.SendablePointer(cache.values[layer].pointer)
        let qp = QSTNN.SendablePointer(q), op = QSTNN.SendablePointer(out)
        let maskCopy = cache.mask
        let total = past + newTokens
        let work = batch * H * newTokens * total * hd
        maskCopy.withUnsafeBufferPointer { mb in
            let mp = QSTNN.SendablePointer(mb.baseAddress!)
            Parallel.forRanges(batch * H, threads: work > (1 << 16) ? threads : 1, minChunk: 1) { u0, u1 in
                let scores = UnsafeMutablePointer<Float>.allocate(capacity: max(1, total))
                defer { scores.deallocate() }
                for u in u0..<u1 {
                    let b = u / H, h = u % H, g = h / group
                    let mask = mp + b * cap
                    let kb = kp + b * cap * ldk + g * hd, vb = vp + b * cap * ldk + g * hd
                    for t in 0..<newTokens {
                        let qi = qp + (b * newTokens + t) * ldq + h * hd
                        let oi = op + (b * newTokens + t) * ldq + h * hd
                        for d in 0..<hd { oi[d] = 0 }
                        let last = past + t + 1
                        var mx = -Float.infinity
                        for j in 0..<last {
                            guard mask[j] != 0 else { scores[j] = -Float.infinity; continue }
                            let kj = kb + j * ldk
                            var acc: Float = 0
                            for d in 0..<hd { acc += qi[d] * kj[d] }
                            acc *= scale
                            scores[j] = acc
                            mx = max(mx, acc)
                        }
                        guard mx > -Float.infinity else { continue }
                        // Vectorised exp (SideAttention's); masked keys come out ~1e-38 and are skipped below.
                        let sum = FastExp.expShiftedInPlace(scores, count: last, shift: mx)
                        let inv = 1 / sum
                        for j in 0..<last where mask[j] != 0 {
                            let p = scores[j] * inv, vj = vb + j * ldk
                            for d in 0..<hd { oi[d] += p * vj[d] }
                        }
                    }
                }
            }
        }
    }
}
