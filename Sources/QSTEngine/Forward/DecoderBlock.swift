import QSTKernels
import QSTNN

/// Shape of one LLaMA-style decoder block.
public struct DecoderBlockShape: Sendable, Equatable {
    public var hidden: Int
    public var intermediate: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    public var eps: Float

    public init(hidden: Int, intermediate: Int, heads: Int, kvHeads: Int, headDim: Int, eps: Float) {
        self.hidden = hidden; self.intermediate = intermediate; self.heads = heads
        self.kvHeads = kvHeads; self.headDim = headDim; self.eps = eps
    }

    public init(config c: ModelConfig) {
        self.init(
            hidden: c.hiddenSize, intermediate: c.intermediateSize, heads: c.numAttentionHeads,
            kvHeads: c.kvHeads, headDim: c.resolvedHeadDim, eps: c.eps)
    }

    public var qDim: Int { heads * headDim }
    public var kvDim: Int { kvHeads * headDim }
}

/// The weights of one block: pre-norms as F32 vectors, linears of any storage.
public struct DecoderBlockWeights {
    public var inputNorm: UnsafePointer<Float>
    public var postAttentionNorm: UnsafePointer<Float>
    public var q: any LinearWeights, k: any LinearWeights, v: any LinearWeights, o: any LinearWeights
    public var gate: any LinearWeights, up: any LinearWeights, down: any LinearWeights
    /// Keeps the norm vectors (and anything else pointed to) alive.
    public var owners: [AnyObject]

    public init(
        inputNorm: UnsafePointer<Float>, postAttentionNorm: UnsafePointer<Float>,
        q: any LinearWeights, k: any LinearWeights, v: any LinearWeights, o: any LinearWeights,
        gate: any LinearWeights, up: any LinearWeights, down: any LinearWeights, owners: [AnyObject]
    ) {
        self.inputNorm = inputNorm; self.postAttentionNorm = postAttentionNorm
        self.q = q; self.k = k; self.v = v; self.o = o; self.gate = gate; self.up = up; self.down = down
        self.owners = owners
    }
}

/// How one block's cached keys and values are stored.
public enum KVStorage {
    /// `[batch, capacity, kvDim]` each.
    case float32(keys: UnsafeMutablePointer<Float>, values: UnsafeMutablePointer<Float>)
    /// IEEE binary16 (`kv_half.h`): values `[batch, capacity, kvDim]`; keys in tiles of 16 tokens, `keyStride`
    /// halves per (sequence, key/value head), sequence-major.
    case float16(keys: UnsafeMutablePointer<UInt16>, values: UnsafeMutablePointer<UInt16>, headDim: Int, keyStride: Int)
}

/// Where one block's keys and values live (`storage`), plus a `[batch, capacity]` key mask (nonzero = a real
/// token). Rows `0..<pastLength` already hold earlier tokens.
/// With a sliding `window` the storage is a float32 ring of `capacity` slots (row `a` in slot `a mod capacity`)
/// and the new tokens' key mask is `newKeyMask [batch·newTokens]` (see `KVCache`, `WindowedAttention`).
public struct KVSlot {
    public var storage: KVStorage
    public var keyMask: UnsafePointer<UInt8>
    public var capacity: Int
    public var pastLength: Int
    public var window: Int?
    public var newKeyMask: UnsafePointer<UInt8>?

    public init(
        storage: KVStorage, keyMask: UnsafePointer<UInt8>, capacity: Int, pastLength: Int, window: Int? = nil,
        newKeyMask: UnsafePointer<UInt8>? = nil
    ) {
        self.storage = storage; self.keyMask = keyMask; self.capacity = capacity
        self.pastLength = pastLength; self.window = window; self.newKeyMask = newKeyMask
    }

    public init(
        keys: UnsafeMutablePointer<Float>, values: UnsafeMutablePointer<Float>, keyMask: UnsafePointer<UInt8>,
        capacity: Int, pastLength: Int, window: Int? = nil, newKeyMask: UnsafePointer<UInt8>? = nil
    ) {
        self.init(
            storage: .float32(keys: keys, values: values), keyMask: keyMask, capacity: capacity,
            pastLength: pastLength, window: window, newKeyMask: newKeyMask)
    }

    /// The float32 keys and values. Rings (sliding windows) and OPT's caches are always float32
    /// (`FrozenModel.makeCache`); asking a float16 slot for them is a programming error.
    public var keys: UnsafeMutablePointer<Float> {
        guard case .float32(let k, _) = storage else {
            preconditionFailure("KV slot: float16 storage has no float32 keys")
        }
        return k
    }
    public var values: UnsafeMutablePointer<Float> {
        guard case .float32(_, let v) = storage else {
            preconditionFailure("KV slot: float16 storage has no float32 values")
        }
        return v
    }

    /// Writes the new tokens' keys and values `[batch·newTokens, kvDim]` at rows `pastLength..<pastLength+newTokens`
    /// of each sequence (plain caches; float16 rounds them here, once).
    func store(keys k: UnsafePointer<Float>, values v: UnsafePointer<Float>, batch: Int, newTokens: Int, kvDim: Int) {
        for b in 0..<batch {
            let dstRow = b * capacity + pastLength, src = b * newTokens * kvDim
            switch storage {
            case .float32(let keys, let values):
                (keys + dstRow * kvDim).update(from: k + src, count: newTokens * kvDim)
                (values + dstRow * kvDim).update(from: v + src, count: newTokens * kvDim)
            case .float16(let keys, let values, let hd, let keyStride):
                for h in 0..<(kvDim / hd) {
                    qst_f16_key_tiles_store(
                        keys + (b * (kvDim / hd) + h) * keyStride, Int64(hd), Int64(pastLength), k + src + h * hd,
                        Int64(kvDim), Int64(newTokens))
                }
                qst_f16_from_f32(
                    values + dstRow * kvDim, Int64(kvDim), v + src, Int64(kvDim), Int64(newTokens), Int64(kvDim),
                    Int32(QST_VEC_AUTO.rawValue))
            }
        }
    }
}

/// Activation scratch for one block at a time, sized for `rows` tokens; grows on demand and is reused
/// by every layer, so memory does not grow with depth.
public final class DecoderScratch {
    public private(set) var rows = 0
    private let shape: DecoderBlockShape
    private(set) var normed = FloatBuffer(count: 0)
    private(set) var q = FloatBuffer(count: 0)
    private(set) var k = FloatBuffer(count: 0)
    private(set) var v = FloatBuffer(count: 0)
    private(set) var attn = FloatBuffer(count: 0)
    private(set) var gate = FloatBuffer(count: 0)
    private(set) var up = FloatBuffer(count: 0)

    public init(shape: DecoderBlockShape) { self.shape = shape }

    func ensure(rows n: Int) {
        guard n > rows else { return }
        rows = n
        normed = FloatBuffer(count: n * shape.hidden)
        q = FloatBuffer(count: n * shape.qDim)
        k = FloatBuffer(count: n * shape.kvDim)
        v = FloatBuffer(count: n * shape.kvDim)
        attn = FloatBuffer(count: n * shape.qDim)
        gate = FloatBuffer(count: n * shape.intermediate)
        up = FloatBuffer(count: n * shape.intermediate)
    }
}

/// Forward of a pre-norm LLaMA decoder block (RMSNorm → GQA attention with RoPE → residual,
/// RMSNorm → SwiGLU MLP → residual), the same for the frozen model and the side network.
public enum DecoderBlock {
    /// Updates the residual stream `x [batch·newTokens, hidden]` in place.
    /// - `cos, sin`: `[batch·newTokens, headDim/2]` RoPE tables for each token's position.
    /// - `kv`: this layer's cache; the new tokens' rotated keys and values are written at rows
    ///   `pastLength..<pastLength+newTokens` of each sequence before attending.
    public static func forward(
        x: UnsafeMutablePointer<Float>, batch: Int, newTokens: Int,
        weights w: DecoderBlockWeights, shape s: DecoderBlockShape,
        cos: UnsafePointer<Float>, sin: UnsafePointer<Float>,
        kv: KVSlot, scratch: DecoderScratch, context: MatmulContext
    ) {
        forward(
            x: x, rows: batch * newTokens, weights: w, shape: s, cos: cos, sin: sin, scratch: scratch,
            context: context
        ) { q, k, v, attn in
            if let window = kv.window, let newMask = kv.newKeyMask {
                let keys = WindowedAttention.Keys(
                    ringK: kv.keys, ringV: kv.values, ringMask: kv.keyMask,
                    ringRows: kv.capacity, newK: k, newV: v, newMask: newMask)
                WindowedAttention.forward(
                    out: attn, q: q, keys: keys, batch: batch, newTokens: newTokens,
                    pastLength: kv.pastLength, window: window, nHeads: s.heads,
                    nKVHeads: s.kvHeads, headDim: s.headDim, threads: context.threads)
                WindowedAttention.store(
                    keys: k, values: v, into: kv, batch: batch, newTokens: newTokens, kvDim: s.kvDim)
            } else {
                attendThroughCache(
                    attn: attn, q: q, k: k, v: v, batch: batch, newTokens: newTokens, shape: s, kv: kv,
                    context: context)
            }
        }
    }

    /// Plain causal attention: the new rows are written into the cache, then every query reads it.
    static func attendThroughCache(
        attn: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>,
        v: UnsafePointer<Float>, batch: Int, newTokens: Int, shape s: DecoderBlockShape,
        kv: KVSlot, context: MatmulContext
    ) {
        kv.store(keys: k, values: v, batch: batch, newTokens: newTokens, kvDim: s.kvDim)
        if case .float32 = kv.storage, !BLASThreadScope.isSingleThreaded {
            Attention.forwardCached(
                out: attn, q: q, kCache: kv.keys, vCache: kv.values, keyMask: kv.keyMask,
                batch: batch, newTokens: newTokens, pastLength: kv.pastLength,
                capacity: kv.capacity, nHeads: s.heads, nKVHeads: s.kvHeads, headDim: s.headDim)
        } else {
            HeadParallelAttention.forward(
                out: attn, q: q, slot: kv, batch: batch, newTokens: newTokens, nHeads: s.heads, nKVHeads: s.kvHeads,
                headDim: s.headDim, threads: context.threads, rowIndependent: context.rowIndependent)
        }
    }

    /// The block over `rows` tokens of any sequences: everything but attention works row by row; `attend(q,
    /// k, v, out)` gets the rotated queries, keys and values `[rows, ·]`, stores the keys and values where the
    /// rows' sequences keep them and writes the attention output `[rows, qDim]` (the batched server gives
    /// each sequence its own cache: `FrozenModel.forwardRagged`).
    static func forward(
        x: UnsafeMutablePointer<Float>, rows n: Int, weights w: DecoderBlockWeights,
        shape s: DecoderBlockShape, cos: UnsafePointer<Float>, sin: UnsafePointer<Float>,
        scratch: DecoderScratch, context: MatmulContext,
        attend: (
            UnsafeMutablePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>,
            UnsafeMutablePointer<Float>
        ) -> Void
    ) {
        guard n > 0 else { return }
        scratch.ensure(rows: n)
        let h = scratch.normed.pointer, q = scratch.q.pointer, k = scratch.k.pointer, v = scratch.v.pointer
        let attn = scratch.attn.pointer

        RMSNorm.forward(out: h, rstd: nil, x: x, weight: w.inputNorm, n: n, d: s.hidden, eps: s.eps)
        FusedLinears.forward([(w.q, q), (w.k, k), (w.v, v)], x: h, n: n, context: context)
        RoPE.forward(x: q, cos: cos, sin: sin, n: n, nHeads: s.heads, headDim: s.headDim)
        RoPE.forward(x: k, cos: cos, sin: sin, n: n, nHeads: s.kvHeads, headDim: s.headDim)
        attend(q, k, v, attn)
        w.o.forward(out: x, x: attn, n: n, accumulate: true, context: context)

        RMSNorm.forward(out: h, rstd: nil, x: x, weight: w.postAttentionNorm, n: n, d: s.hidden, eps: s.eps)
        let g = scratch.gate.pointer, u = scratch.up.pointer
        FusedLinears.forward([(w.gate, g), (w.up, u)], x: h, n: n, context: context)
        SwiGLU.forward(out: g, gate: g, up: u, count: n * s.intermediate)
        w.down.forward(out: x, x: g, n: n, accumulate: true, context: context)
    }
}
