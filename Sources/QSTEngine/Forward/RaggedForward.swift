import Foundation
import QSTFormat
import QSTKernels
import QSTNN
import enum QSTCore.Parallel

/// One sequence's part of a ragged step: its new tokens and its own single-sequence cache.
public struct RaggedSegment {
    public var ids: [Int32]
    public var cache: KVCache

    public init(ids: [Int32], cache: KVCache) { self.ids = ids; self.cache = cache }
}

extension FrozenModel {
    /// Runs several sequences, each with its own `KVCache` (batch 1) and its own number of new tokens, as one
    /// forward: the rows of all segments are stacked `[Σ tokens, hidden]`, so every linear reads its weights
    /// once for all of them, and only attention runs per sequence over that sequence's cache. This is what
    /// continuous batching needs (a server's requests join and leave at any step, one decoding a token while
    /// another prefills a chunk), which the rectangular `forward` (all sequences advance together) cannot do.
    ///
    /// `visit(i, h)` sees the stacked residual stream after layer i (0 = embeddings); segment j's rows start
    /// at `Σ_{k<j} ids[k].count`. Returns the final-normed hidden states of all rows. LLaMA family only.
    public func forwardRagged(
        _ segments: [RaggedSegment],
        visit: ((Int, UnsafePointer<Float>) throws -> Void)? = nil
    ) throws -> FloatBuffer {
        guard opt == nil else { throw QSTError("ragged forward: OPT models are not supported (LLaMA family only)") }
        let blas = BLASThreadScope()
        defer { blas.restore() }
        let n = segments.reduce(0) { $0 + $1.ids.count }, d = hiddenSize, s = blockShape
        guard n > 0 else { throw QSTError("ragged forward: no tokens") }
        // Check everything before any cache is touched, so a bad segment leaves every cache as it was.
        for (j, seg) in segments.enumerated() {
            guard seg.cache.batch == 1 else {
                throw QSTError("ragged forward: segment \(j)'s cache holds \(seg.cache.batch) sequences, not 1")
            }
            // The per-sequence attention here is plain causal: it does not apply a sliding window, so a sequence
            // may not grow past one (the rectangular forward's ring cache does; the server refuses longer requests).
            if let w = config.slidingWindow, seg.cache.length + seg.ids.count > w {
                throw QSTError(
                    "ragged forward: segment \(j) reaches \(seg.cache.length + seg.ids.count) positions, past "
                        + "the model's sliding window of \(w) (not supported by batched serving)")
            }
            guard seg.cache.length + seg.ids.count <= seg.cache.capacity else {
                throw QSTError(
                    "ragged forward: segment \(j) needs \(seg.cache.length + seg.ids.count) positions, its cache holds \(seg.cache.capacity)"
                )
            }
            try config.checkSequenceLength(seg.cache.length + seg.ids.count)
            for id in seg.ids where id < 0 || Int(id) >= vocabSize {
                throw QSTError(
                    "ragged forward: token id \(id) of segment \(j) is outside the vocabulary 0..<\(vocabSize)")
            }
        }
        var positions: [Int32] = []
        positions.reserveCapacity(n)
        var starts: [Int] = []
        for seg in segments {
            starts.append(positions.count)
            positions += try seg.cache.append(
                newTokens: seg.ids.count, valid: [UInt8](repeating: 1, count: seg.ids.count))
        }
        // One segment is one call whatever the limit (a request alone: the calls `forward` makes).
        let limit = segments.count > 1 ? try blockWeights(0).gemvRowLimit(context: context) : Int(QST_GEMV_MAX_ROWS)
        let groups = RowGroupedLinear.groups(sizes: segments.map(\.ids.count), limit: limit)
        let half = config.resolvedHeadDim / 2
        let cos = FloatBuffer(count: n * half), sin = FloatBuffer(count: n * half)
        positions.withUnsafeBufferPointer { p in
            RoPE.cosSin(cos: cos.pointer, sin: sin.pointer, positions: p.baseAddress!, n: n, invFreq: invFreq)
        }
        let x = FloatBuffer(count: n * d)
        var row = 0
        for seg in segments {
            for id in seg.ids { embedding.decode(start: Int(id) * d, count: d, into: x.pointer + row * d); row += 1 }
        }
        try visit?(0, x.constPointer)
        prefetch(layer: 0)
        for i in 0..<layerCount {
            if i + 1 < layerCount { prefetch(layer: i + 1) }
            let w = RowGroupedLinear.wrap(try blockWeights(i), groups: groups)
            let ctx = context
            DecoderBlock.forward(
                x: x.pointer, rows: n, weights: w, shape: s, cos: cos.constPointer, sin: sin.constPointer,
                scratch: scratch, context: ctx
            ) { q, k, v, attn in
                let jobs = RaggedAttention(
                    q: q, attn: attn, shape: s,
                    slots: segments.enumerated().map { j, seg in
                        let kv = seg.cache.slot(layer: i), t = seg.ids.count, r0 = starts[j]
                        kv.store(
                            keys: k + r0 * s.kvDim, values: v + r0 * s.kvDim, batch: 1, newTokens: t, kvDim: s.kvDim)
                        return (kv, t, r0)
                    })
                jobs.run(threads: ctx.threads)
            }
            if dropPages { source.dropLayer(i) }
            try visit?(i + 1, x.constPointer)
        }
        for seg in segments { seg.cache.commit(newTokens: seg.ids.count) }
        RMSNorm.forward(
            out: x.pointer, rstd: nil, x: x.constPointer, weight: finalNorm.constPointer, n: n, d: d,
            eps: config.eps)
        return x
    }
}

/// Attention of one ragged layer: each segment over its own cache. A segment of a few rows (a decoding
/// request) is too little work to spread its heads over the workers — on a busy machine waking them costs
/// more than the arithmetic — so such segments run whole, in parallel with each other; a long segment
/// (a prompt chunk) spreads its heads as the rectangular forward does.
private struct RaggedAttention: @unchecked Sendable {
    let q: UnsafePointer<Float>
    let attn: UnsafeMutablePointer<Float>
    let shape: DecoderBlockShape
    let slots: [(kv: KVSlot, rows: Int, start: Int)]

    func one(_ j: Int, threads: Int) {
        let (kv, t, r0) = slots[j], s = shape
        HeadParallelAttention.forward(
            out: attn + r0 * s.qDim, q: q + r0 * s.qDim, slot: kv, batch: 1, newTokens: t, nHeads: s.heads,
            nKVHeads: s.kvHeads, headDim: s.headDim, threads: threads)
    }

    func run(threads: Int) {
        let small = slots.indices.filter { slots[$0].rows <= 4 }
        for j in slots.indices where slots[j].rows > 4 { one(j, threads: threads) }
        Parallel.forRanges(small.count, threads: threads, minChunk: 2) { a, b in
            for u in a..<b { one(small[u], threads: 1) }
        }
    }
}

/// Runs a linear over a ragged step's rows in groups: each segment of more than `limit` rows alone (a
/// prompt chunk: the same call, hence the same bits, as `forward` for that prompt alone), consecutive small
/// segments (decoding requests) packed up to `limit` rows, the rows for which every linear of the block
/// runs the kernels' GEMV loops (`gemvRowLimit` for SmolLM2 NF4: 24 with AVX512_BF16, 16 with AVX512_VNNI, 12
/// on other AVX-512 CPUs, 8 on AVX2, 4 on the scalar loops). In those loops each row gets the bits it gets alone — the GEMV
/// path `qst-generate` gives a decoding request's row — and the rows of a call share the weights' reading
/// and decoding. (The GEMM loops, which the kernels take past that count, would change the bits;
/// BENCHMARKS.md §16.) When the whole step is one group (every request decoding) the block's linears run
/// unwrapped, so q/k/v and gate/up also fuse into one parallel job each (`FusedLinears`).
struct RowGroupedLinear: LinearWeights {
    let inner: any LinearWeights
    let groups: [Range<Int>]
    var inFeatures: Int { inner.inFeatures }
    var outFeatures: Int { inner.outFeatures }

    /// Groups for segments of `sizes` rows, in order.
    static func groups(sizes: [Int], limit: Int) -> [Range<Int>] {
        var out: [Range<Int>] = [], row = 0
        for n in sizes {
            if n <= limit, let last = out.last, last.count <= limit, last.count + n <= limit {
                out[out.count - 1] = last.lowerBound..<(row + n)
            } else {
                out.append(row..<(row + n))
            }
            row += n
        }
        return out
    }

    func forward(
        out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, n: Int, accumulate: Bool,
        context: MatmulContext
    ) {
        guard groups.count > 1 else {
            inner.forward(out: out, x: x, n: n, accumulate: accumulate, context: context)
            return
        }
        for g in groups {
            inner.forward(
                out: out + g.lowerBound * outFeatures, x: x + g.lowerBound * inFeatures, n: g.count,
                accumulate: accumulate, context: context)
        }
    }

    static func wrap(_ w: DecoderBlockWeights, groups: [Range<Int>]) -> DecoderBlockWeights {
        guard groups.count > 1 else { return w }
        var g = w
        func r(_ l: any LinearWeights) -> any LinearWeights { RowGroupedLinear(inner: l, groups: groups) }
        g.q = r(w.q); g.k = r(w.k); g.v = r(w.v); g.o = r(w.o); g.gate = r(w.gate); g.up = r(w.up); g.down = r(w.down)
        return g
    }
}

extension FrozenModel {
    /// `logits(hidden:rows:)` for one row of each of several requests, up to 4 rows per call, for the same
    /// reasons as `RowGroupedLinear` (the head is the largest matrix).
    public func raggedLogits(hidden: UnsafePointer<Float>, rows: Int) -> FloatBuffer {
        if decodeHead != nil { return decodeLogits(hidden: hidden, rows: rows) }
        let blas = BLASThreadScope()
        defer { blas.restore() }
        let out = FloatBuffer(count: rows * vocabSize)
        RowGroupedLinear(
            inner: headLinear,
            groups: RowGroupedLinear.groups(
                sizes: [Int](repeating: 1, count: rows),
                limit: Int(QST_GEMV_MAX_ROWS))
        )
        .forward(out: out.pointer, x: hidden, n: rows, accumulate: false, context: context)
        return out
    }
}
