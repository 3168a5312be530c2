import Foundation
import QSTFormat
import QSTNN

/// How the engine runs.
public struct EngineOptions: Sendable {
    /// Arithmetic for NF4/BF16 linears (see `MatmulPath`).
    public var matmulPath: MatmulPath
    /// When set and the weights are larger than this many MiB, each layer's pages are dropped from the
    /// process after use and block weights are rebuilt per forward, so residency stays near a few layers.
    public var residentBudgetMB: Int?

    public init(matmulPath: MatmulPath = .kernelsAuto, residentBudgetMB: Int? = nil) {
        self.matmulPath = matmulPath; self.residentBudgetMB = residentBudgetMB
    }
}

/// The frozen LLaMA-family model over a `WeightSource`, run layer by layer.
///
/// Memory: one layer's activations at a time (`DecoderScratch`), the residual stream, and — only when
/// generating — a `KVCache`. The next layer's pages are prefetched while the current one runs.
public final class FrozenModel: FrozenBackbone {
    public let config: ModelConfig
    public let source: WeightSource
    public let options: EngineOptions
    public let family: any ModelFamily.Type
    public let blockShape: DecoderBlockShape
    let embedding: WeightTensor
    let head: WeightTensor
    let finalNorm: FloatBuffer
    let invFreq: [Float]
    /// OPT's stem, tail and layers (nil for the LLaMA family).
    let opt: OPTParts?
    let dropPages: Bool
    private var blockCache: [Int: DecoderBlockWeights] = [:]
    /// When set, every forward runs block `i` with `blockTransform(i, weights)` instead of its weights (for example
    /// linears wrapped to record their inputs: `ImportanceMatrix`). Nil in normal use.
    public var blockTransform: ((Int, DecoderBlockWeights) -> DecoderBlockWeights)?
    let context: MatmulContext
    let scratch: DecoderScratch
    /// The head's int8 copy decoding uses, if any (`--matmul auto` only), made on first use (`decodeLogits`).
    private(set) lazy var decodeHead: Q8DecodeHead? =
        options.matmulPath == .kernelsAuto ? Q8DecodeHead(head: head) : nil
    /// Layers whose pages were prefetched (and, without `dropPages`, stay).
    private var prefetchedLayers = Set<Int>()

    public convenience init(path: String, options: EngineOptions = EngineOptions()) throws {
        try self.init(source: try openWeightSource(path: path), options: options)
    }

    public init(source: WeightSource, options: EngineOptions = EngineOptions()) throws {
        self.source = source
        self.options = options
        let c = try ModelConfig.parse(try source.configJSON(), origin: source.origin)
        config = c
        family = try ModelFamilies.family(for: c, origin: source.origin)
        blockShape = DecoderBlockShape(config: c)
        if c.isOPT {
            let parts = try OPTParts(config: c, source: source)
            opt = parts
            embedding = parts.tokens; head = parts.head; finalNorm = FloatBuffer(count: 0); invFreq = []
        } else {
            opt = nil
            embedding = try source.tensor("model.embed_tokens.weight")
            try embedding.expectShape([c.vocabSize, c.hiddenSize], origin: source.origin)
            if source.contains("lm_head.weight") {
                head = try source.tensor("lm_head.weight")
                try head.expectShape([c.vocabSize, c.hiddenSize], origin: source.origin)
            } else if c.tieWordEmbeddings != false {
                head = embedding
            } else {
                throw QSTError.tensor(source.origin, "lm_head.weight", "missing while tie_word_embeddings is false")
            }
            finalNorm = try WeightLoading.vector(source, "model.norm.weight", count: c.hiddenSize)
            invFreq = RoPE.inverseFrequencies(
                headDim: c.resolvedHeadDim, theta: c.theta,
                scaling: try c.ropeScalingValue(origin: source.origin))
        }
        if let mb = options.residentBudgetMB { dropPages = source.weightBytes > mb << 20 } else { dropPages = false }
        context = MatmulContext(path: options.matmulPath)
        scratch = DecoderScratch(shape: blockShape)
        // Fail on a missing or misshapen layer tensor now rather than halfway through a forward.
        for i in 0..<c.numHiddenLayers {
            if let opt { _ = try opt.layer(i, cache: !dropPages) } else { _ = try blockWeights(i) }
        }
        if dropPages { blockCache.removeAll(); opt?.dropCachedLayers() }
    }

    // FrozenBackbone
    public var hiddenSize: Int { config.hiddenSize }
    /// Width of what the LM head reads (`forward`'s result): OPT's word_embed_proj_dim, else hiddenSize.
    public var headInputSize: Int { config.headInputSize }
    public var layerCount: Int { config.numHiddenLayers }
    public var vocabSize: Int { config.vocabSize }
    public var intermediateSize: Int { config.intermediateSize }
    public var attentionHeads: Int { config.numAttentionHeads }
    public var keyValueHeads: Int { config.kvHeads }

    /// Block `i`'s weights: cached, unless pages are being dropped (then decoded absmax and the like are
    /// rebuilt each time so nothing of a finished layer stays resident).
    func blockWeights(_ i: Int) throws -> DecoderBlockWeights {
        if let w = blockCache[i] { return w }
        let w = try family.blockWeights(layer: i, config: config, source: source)
        if !dropPages { blockCache[i] = w }
        return w
    }

    /// A fresh cache for `batch` sequences of up to `capacity` tokens; with a sliding window shorter than
    /// `capacity` it holds only `window − 1` rows per sequence (a ring, see `KVCache`).
    /// Under `--matmul auto` a plain LLaMA-family cache stores float16 (`kvCachePrecision(capacity:)`);
    /// `float32` keeps keys and values unrounded on every path (as a forward without a cache keeps them).
    public func makeCache(batch: Int, capacity: Int, float32: Bool = false) -> KVCache {
        KVCache(
            layers: layerCount, batch: batch, capacity: capacity, kvDim: config.kvDim, window: config.attentionWindow,
            precision: float32 ? .float32 : kvCachePrecision(capacity: capacity), headDim: config.resolvedHeadDim)
    }

    /// float16 under `--matmul auto` (the path that already rounds the products: decoding reads each request's
    /// cache once per token, and half the bytes is what a batched server's step waits for, BENCHMARKS.md §33);
    /// float32 under `exact` and `sgemm`, for OPT, for a sliding-window ring and for heads over 256.
    public func kvCachePrecision(capacity: Int) -> KVCachePrecision {
        let ring = config.attentionWindow.map { $0 < capacity } ?? false
        return options.matmulPath == .kernelsAuto && opt == nil && !ring && config.resolvedHeadDim <= 256
            ? .float16 : .float32
    }

    /// Runs `newTokens` tokens per sequence (`ids [batch·newTokens]`, `valid` nonzero = real token, nil = all)
    /// through the model. With a cache the tokens continue what the cache holds; without one they form
    /// complete right-padded sequences. `visit(i, h)` sees the residual stream after layer i (0 = embeddings).
    /// Returns the final-normed hidden states `[batch·newTokens, headInputSize]`.
    public func forward(
        ids: [Int32], batch: Int, newTokens: Int, valid: [UInt8]? = nil, cache: KVCache? = nil,
        visit: ((Int, UnsafePointer<Float>) throws -> Void)? = nil
    ) throws -> FloatBuffer {
        let blas = BLASThreadScope()
        defer { blas.restore() }
        let n = batch * newTokens
        guard ids.count == n else {
            throw QSTError("forward: \(ids.count) ids for batch \(batch) × \(newTokens) tokens")
        }
        let d = hiddenSize
        let validMask = valid ?? [UInt8](repeating: 1, count: n)
        guard validMask.count == n else {
            throw QSTError("forward: mask has \(validMask.count) entries, expected \(n)")
        }
        for (i, id) in ids.enumerated() where validMask[i] != 0 && (id < 0 || Int(id) >= vocabSize) {
            throw QSTError("forward: token id \(id) at position \(i) is outside the vocabulary 0..<\(vocabSize)")
        }
        if let cache, cache.batch != batch {
            throw QSTError("forward: cache is for batch \(cache.batch), got \(batch)")
        }
        try config.checkSequenceLength((cache?.length ?? 0) + newTokens)

        // Without a cache one reusable K/V slot serves every layer: attention only needs the current layer's.
        let positions: [Int32]
        let local: KVCache?
        if let cache {
            positions = try cache.append(newTokens: newTokens, valid: validMask)
            local = nil
        } else {
            let c = KVCache(
                layers: 1, batch: batch, capacity: newTokens, kvDim: config.kvDim, window: config.attentionWindow)
            positions = try c.append(newTokens: newTokens, valid: validMask)
            local = c
        }
        // A ring cache (sliding window) keeps the new tokens' key mask apart until commit.
        let pendingMask = (cache ?? local!).pendingKeyMask
        let pendingBuffer = Buffer<UInt8>(count: pendingMask.count)
        for (i, m) in pendingMask.enumerated() { pendingBuffer[i] = m }
        let pending: UnsafePointer<UInt8>? = pendingMask.isEmpty ? nil : pendingBuffer.constPointer
        defer { withExtendedLifetime(pendingBuffer) {} }
        let half = config.resolvedHeadDim / 2
        // OPT has no RoPE: its learned position embeddings are added in `OPTParts.embed`.
        let ropeRows = opt == nil ? n : 0
        let cos = FloatBuffer(count: ropeRows * half), sin = FloatBuffer(count: ropeRows * half)
        if ropeRows > 0 {
            positions.withUnsafeBufferPointer { p in
                RoPE.cosSin(cos: cos.pointer, sin: sin.pointer, positions: p.baseAddress!, n: n, invFreq: invFreq)
            }
        }

        let x = FloatBuffer(count: n * d)
        if let opt {
            try opt.embed(ids: ids, valid: validMask, positions: positions, into: x.pointer, context: context)
        } else {
            for (r, id) in ids.enumerated() where validMask[r] != 0 {
                embedding.decode(start: Int(id) * d, count: d, into: x.pointer + r * d)
            }
        }
        try visit?(0, x.constPointer)
        prefetch(layer: 0)
        for i in 0..<layerCount {
            if i + 1 < layerCount { prefetch(layer: i + 1) }
            let slot = cache?.slot(layer: i, pending: pending) ?? local!.slot(layer: 0, pending: pending)
            if let opt {
                OPTBlock.forward(
                    x: x.pointer, batch: batch, newTokens: newTokens, weights: try opt.layer(i, cache: !dropPages),
                    config: config, kv: slot, scratch: opt.scratch, context: context)
                if dropPages { source.dropLayer(i) }
                try visit?(i + 1, x.constPointer)
                continue
            }
            let stored = try blockWeights(i)
            let w = blockTransform?(i, stored) ?? stored
            DecoderBlock.forward(
                x: x.pointer, batch: batch, newTokens: newTokens, weights: w, shape: blockShape,
                cos: cos.constPointer, sin: sin.constPointer, kv: slot, scratch: scratch,
                context: context)
            if dropPages { source.dropLayer(i) }
            try visit?(i + 1, x.constPointer)
        }
        cache?.commit(newTokens: newTokens)
        if let opt { return opt.finish(x, n: n, context: context) }
        RMSNorm.forward(
            out: x.pointer, rstd: nil, x: x.constPointer, weight: finalNorm.constPointer,
            n: n, d: d, eps: config.eps)
        return x
    }

    /// Full logits `[rows, vocab]` for the given final hidden states (use for few rows; the perplexity
    /// path streams the head instead).
    public func logits(hidden: UnsafePointer<Float>, rows: Int) -> FloatBuffer {
        let blas = BLASThreadScope()
        defer { blas.restore() }
        let out = FloatBuffer(count: rows * vocabSize)
        headLinear.forward(out: out.pointer, x: hidden, n: rows, accumulate: false, context: context)
        return out
    }

    /// `logits(hidden:rows:)` for decoding: under `--matmul auto` through the head's int8 copy (built on first
    /// use; half the bytes a BF16 head reads per token), `Q8DecodeHead.maxRows` rows per pass. Each row's
    /// logits have the same bits whatever the other rows (x is rounded per row, every output summed in one
    /// order), so batched decoding (the server) and one-request decoding agree.
    public func decodeLogits(hidden: UnsafePointer<Float>, rows: Int) -> FloatBuffer {
        guard let q8 = decodeHead else { return logits(hidden: hidden, rows: rows) }
        let out = FloatBuffer(count: rows * vocabSize)
        var r0 = 0
        while r0 < rows {
            let n = min(Q8DecodeHead.maxRows, rows - r0)
            q8.forward(
                out: out.pointer + r0 * vocabSize, x: hidden + r0 * headInputSize, n: n, threads: context.threads)
            r0 += n
        }
        return out
    }

    /// Asks the kernel to read layer `i`'s pages ahead, unless they were already asked for and are kept: a
    /// madvise over resident pages still walks the page cache (5 % of a decode step on SmolLM2, perf).
    func prefetch(layer i: Int) {
        if !dropPages, prefetchedLayers.contains(i) { return }
        source.prefetchLayer(i)
        if !dropPages { prefetchedLayers.insert(i) }
    }

    /// Logits for whole right-padded sequences: `[batch·seqLen, vocab]` (padding rows are unspecified).
    public func logits(_ batch: TokenBatch) throws -> FloatBuffer {
        let valid = Attention.maskFromLengths(batch.lengths, seqLen: batch.seqLen)
        let h = try forward(ids: batch.ids, batch: batch.batch, newTokens: batch.seqLen, valid: valid)
        return logits(hidden: h.constPointer, rows: batch.ids.count)
    }

    /// Which matmul path products of `rows` rows take, for benchmark reports: "layers nf4 avx2-gemv, head bf16
    /// avx2-gemv" (the first layer's gate projection, OPT's fc1, stands for every block linear).
    public func matmulRoutes(rows: Int, rowIndependent: Bool = false) -> String {
        func describe(_ t: WeightTensor) -> String {
            if case .f32 = t.storage { return "f32 sgemm" }
            let kind: String
            switch t.storage {
            case .nf4: kind = "nf4";
            case .bf16: kind = "bf16";
            case .f32: kind = "f32"
            }
            return kind + " "
                + QuantizedLinear(tensor: t, bias: nil).route(
                    rows: rows, path: options.matmulPath,
                    rowIndependent: rowIndependent)
        }
        var parts: [String] = []
        // The first layer's widest input projection: LLaMA's gate_proj, OPT's fc1.
        let firstLayer = ["model.layers.0.mlp.gate_proj.weight", "model.decoder.layers.0.fc1.weight"]
        if let layer = firstLayer.lazy.compactMap({ try? self.source.tensor($0) }).first {
            parts.append("layers " + describe(layer))
        }
        if !rowIndependent, rows <= Q8DecodeHead.maxRows, let q8 = decodeHead {
            parts.append("head q8 " + q8.pathName)
        } else {
            parts.append("head " + describe(head))
        }
        return parts.joined(separator: ", ")
    }

    var headLinear: any LinearWeights {
        if case .f32(let p) = head.storage {
            return DenseLinear(
                weight: p, bias: nil, inFeatures: headInputSize, outFeatures: vocabSize,
                owner: [head.owner].compactMap { $0 })
        }
        return QuantizedLinear(tensor: head, bias: nil)
    }

    public func forwardHiddenStates(_ batch: TokenBatch, visit: (Int, UnsafePointer<Float>) throws -> Void) throws
        -> [Float]
    {
        let valid = Attention.maskFromLengths(batch.lengths, seqLen: batch.seqLen)
        // Training and evaluation batches: every sequence's rows independent of its batch-mates and padding.
        context.rowIndependent = true
        defer { context.rowIndependent = false }
        return try withoutActuallyEscaping(visit) { v in
            try forward(ids: batch.ids, batch: batch.batch, newTokens: batch.seqLen, valid: valid, visit: v).array
        }
    }

    public func headRows() -> HeadRows {
        let t = head, d = headInputSize
        if case .f32(let p) = t.storage {
            return F32HeadRows(weight: p, vocabSize: vocabSize, dim: d, tileRows: 4096)
        }
        return DecodedHeadRows(vocabSize: vocabSize, dim: d, tileRows: 4096) { start, count, dst in
            t.decode(start: start * d, count: count * d, into: dst)
        }
    }
}
