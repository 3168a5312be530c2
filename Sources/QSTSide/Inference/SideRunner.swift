import Foundation
import QSTFormat
import QSTNN

/// One side block during cached decoding: updates `ws.stream [n, w]` in place and stores the step's keys and
/// values in `cache` (`SideFamily.inferenceBlocks` builds them).
protocol SideInferenceBlock {
    func step(
        layer: Int, config: SideConfig, ws: SideRunner.Workspace, n: Int, newTokens: Int, cache: SideKVCache,
        threads: Int)
}

/// One side network running beside the frozen base during inference (Formats/SIDE.md §2, Formats/RUNS.md §5, evaluation
/// mode): fed the base's hidden states layer by layer as the base computes them, with its own KV cache.
/// Weights are read once into pointer tables; gates are passed through σ once.
final class SideRunner {
    let weights: SideWeights
    let config: SideConfig
    /// The matrices in decode order (shared by every runner of this side network).
    let pack: SideInferenceWeights
    /// The family's blocks (LLaMA `Layer`s or `OPTSideInference.Layer`s).
    private let layers: [any SideInferenceBlock]
    private let gateSigmas: [[Float]]
    private let headSigma: [Float]
    private let upBias: UnsafePointer<Float>
    /// `norm_side` weight (and bias for OPT's LayerNorm); nil when the side stream has no final norm.
    private let normSide: UnsafePointer<Float>?, normSideBias: UnsafePointer<Float>?
    /// Ones then zeros: OPT's `norm_side` parameters when the base's LayerNorms are not affine.
    private let plainNorm: FloatBuffer
    private let invFreq: [Float]
    private let threads: Int
    private var ws = Workspace(rows: 0, config: nil)
    private var headUp = FloatBuffer(count: 0)

    /// A LLaMA decoder layer at side width, its matrices in the side network's `SideInferenceWeights`.
    struct Layer: SideInferenceBlock {
        let inNorm, postNorm: UnsafePointer<Float>
        let q, k, v, o, gate, up, down: PackedMatrix

        init(weights: SideWeights, layer i: Int, matrices m: [PackedMatrix]) {
            let n = SideBlock.Names(i)
            inNorm = UnsafePointer(weights.value(n.inNorm)); postNorm = UnsafePointer(weights.value(n.postNorm))
            q = m[0]; k = m[1]; v = m[2]; o = m[3]; gate = m[4]; up = m[5]; down = m[6]
        }

        /// Updates `ws.stream` in place; stores the step's keys and values in `cache`.
        func step(
            layer i: Int, config c: SideConfig, ws: Workspace, n: Int, newTokens: Int, cache: SideKVCache,
            threads: Int
        ) {
            let hd = c.headDim, w = c.width, f = c.intermediate
            let eps = Float(c.base.rmsNormEps), x = ws.stream.pointer
            SideInferenceOps.rmsNorm(ws.normed.pointer, x, inNorm, n: n, d: w, eps: eps)
            q.apply(ws.q.pointer, ws.normed.pointer, n: n)
            k.apply(ws.k.pointer, ws.normed.pointer, n: n)
            v.apply(ws.v.pointer, ws.normed.pointer, n: n)
            SideInferenceOps.rope(ws.q.pointer, cos: ws.cos.pointer, sin: ws.sin.pointer, n: n, heads: c.heads, hd: hd)
            SideInferenceOps.rope(
                ws.k.pointer, cos: ws.cos.pointer, sin: ws.sin.pointer, n: n, heads: c.kvHeads, hd: hd)
            cache.store(layer: i, k: ws.k.pointer, v: ws.v.pointer, newTokens: newTokens)
            SideCachedAttention.forward(
                out: ws.attn.pointer, q: ws.q.pointer, cache: cache, layer: i, newTokens: newTokens,
                heads: c.heads, threads: threads)
            o.apply(x, ws.attn.pointer, n: n, accumulate: true)
            SideInferenceOps.rmsNorm(ws.normed.pointer, x, postNorm, n: n, d: w, eps: eps)
            gate.apply(ws.gate.pointer, ws.normed.pointer, n: n)
            up.apply(ws.up.pointer, ws.normed.pointer, n: n)
            SideInferenceOps.gatedActivation(ws.gate.pointer, ws.up.pointer, count: n * f, c.blockActivation)
            down.apply(x, ws.gate.pointer, n: n, accumulate: true)
        }
    }

    /// The adapter downsampler's LayerNorm (the matrices are in `pack`).
    struct DownNorm {
        let weight, bias: UnsafePointer<Float>
    }
    private let downNorms: [DownNorm?]

    /// Activations for `rows` tokens of one step, reused while they fit.
    struct Workspace {
        let rows: Int
        let stream, down, normed, q, k, v, attn, gate, up, hidden, cos, sin: FloatBuffer
        init(rows n: Int, config c: SideConfig?) {
            rows = n
            let w = c?.width ?? 0, qw = (c?.heads ?? 0) * (c?.headDim ?? 0), kw = (c?.kvHeads ?? 0) * (c?.headDim ?? 0)
            let f = c?.intermediate ?? 0, h = max(c?.adapterHidden ?? 0, 1), half = (c?.headDim ?? 0) / 2
            stream = FloatBuffer(count: n * w); down = FloatBuffer(count: n * w); normed = FloatBuffer(count: n * w)
            q = FloatBuffer(count: n * qw); k = FloatBuffer(count: n * kw); v = FloatBuffer(count: n * kw)
            attn = FloatBuffer(count: n * qw); gate = FloatBuffer(count: n * f); up = FloatBuffer(count: n * f)
            hidden = FloatBuffer(count: n * h); cos = FloatBuffer(count: n * half); sin = FloatBuffer(count: n * half)
        }
    }

    convenience init(weights: SideWeights, precision: SidePackPrecision, threads: Int) {
        self.init(pack: SideInferenceWeights(weights, precision: precision), threads: threads)
    }

    init(pack: SideInferenceWeights, threads: Int) {
        let weights = pack.weights
        self.pack = pack
        self.weights = weights
        config = weights.config
        self.threads = threads
        let c = config
        func p(_ name: String) -> UnsafePointer<Float> { UnsafePointer(weights.value(name)) }
        let sigmas = (0..<c.base.layerCount).map { SideInferenceOps.sigmoid(p(c.gateName($0)), count: c.width) }
        gateSigmas = sigmas
        layers = c.base.family.inferenceBlocks(pack: pack)
        downNorms = (0..<c.base.layerCount).map { i in
            let pre = c.downsamplePrefix(i)
            guard c.downsample == .adapter else { return nil }
            return DownNorm(weight: p(pre + "post_layer_norm.weight"), bias: p(pre + "post_layer_norm.bias"))
        }
        headSigma = SideInferenceOps.sigmoid(p("lm_head_z"), count: c.headSize)
        upBias = p("upsample.bias")
        let plain = FloatBuffer([Float](repeating: 1, count: c.width) + [Float](repeating: 0, count: c.width))
        plainNorm = plain
        let norm = c.base.family.inferenceHeadNorm(weights: weights, plain: plain)
        normSide = norm?.weight; normSideBias = norm?.bias
        invFreq = RoPE.inverseFrequencies(headDim: c.headDim, theta: c.base.ropeTheta)
    }

    func makeCache(batch: Int, capacity: Int) -> SideKVCache {
        SideKVCache(
            layers: config.base.layerCount, batch: batch, capacity: capacity, kvHeads: config.kvHeads,
            headDim: config.headDim)
    }

    /// Prepares a step of `rows` tokens at the given RoPE positions.
    func begin(positions: [Int32]) {
        let n = positions.count
        if ws.rows < n { ws = Workspace(rows: n, config: config) }
        positions.withUnsafeBufferPointer { p in
            RoPE.cosSin(cos: ws.cos.pointer, sin: ws.sin.pointer, positions: p.baseAddress!, n: n, invFreq: invFreq)
        }
    }

    /// `down_i(h)` into `out [n, w]` (no dropout: inference).
    private func downsample(_ i: Int, _ h: UnsafePointer<Float>, n: Int, out: UnsafeMutablePointer<Float>) {
        let c = config, d = c.base.hiddenSize, w = c.width
        switch c.downsample {
        case .adapter:
            let hid = c.adapterHidden, u = ws.hidden.pointer, norm = downNorms[i]!
            pack.downA[i]!.apply(u, h, n: n)
            SideInferenceOps.activate(u, count: n * hid, c.activation.op)
            pack.downB[i]!.apply(ws.normed.pointer, u, n: n)
            SideInferenceOps.layerNorm(
                out, ws.normed.pointer, norm.weight, norm.bias, n: n, d: w,
                eps: Downsampler.layerNormEps)
        case .linear:
            pack.downA[i]!.apply(out, h, n: n)
        case .avgpool, .maxpool:
            let r = c.r, inv = 1 / Float(r)
            for row in 0..<n {
                for g in 0..<w {
                    let base = h + row * d + g * r
                    if c.downsample == .avgpool {
                        var s: Float = 0
                        for j in 0..<r { s += base[j] }
                        out[row * w + g] = s * inv
                    } else {
                        var m = base[0]
                        for j in 1..<r { m = max(m, base[j]) }
                        out[row * w + g] = m
                    }
                }
            }
        }
    }

    /// Consumes base hidden state `v` (0 = embeddings, i + 1 = after layer i) for this side's `n` rows
    /// (`cache.batch` sequences × `newTokens`). The cache must already hold the step's mask (`append`).
    func visit(_ v: Int, h: UnsafePointer<Float>, newTokens: Int, cache: SideKVCache) {
        let n = cache.batch * newTokens
        guard v > 0 else { downsample(0, h, n: n, out: ws.stream.pointer); return }
        let i = v - 1
        downsample(i, h, n: n, out: ws.down.pointer)
        // m = (1 − σ(z_i))·down_i(h) + σ(z_i)·s, then s = block_i(m).
        gateSigmas[i].withUnsafeBufferPointer { s in
            SideInferenceOps.mix(into: ws.stream.pointer, ws.down.pointer, sigma: s.baseAddress!, n: n, d: config.width)
        }
        layers[i].step(layer: i, config: config, ws: ws, n: n, newTokens: newTokens, cache: cache, threads: threads)
    }

    /// `up(norm_side(s))` for rows `rows` of this step (indices into the side's rows), into `headUp`.
    /// Called while the base still holds BLAS at one thread (inside its forward), so no BLAS worker pool
    /// wakes up between tokens.
    func prepareHead(rows: [Int]) {
        let c = config, w = c.width, d = c.headSize
        if headUp.count < rows.count * d { headUp = FloatBuffer(count: rows.count * d) }
        let normed = FloatBuffer(count: w)
        for (k, r) in rows.enumerated() {
            let s = ws.stream.pointer + r * w
            if let normSide, let normSideBias {
                SideInferenceOps.layerNorm(
                    normed.pointer, s, normSide, normSideBias, n: 1, d: w, eps: OPTSideBlock.layerNormEps)
            } else if let normSide {
                SideInferenceOps.rmsNorm(normed.pointer, s, normSide, n: 1, d: w, eps: Float(c.base.rmsNormEps))
            } else {
                normed.pointer.update(from: s, count: w)
            }
            pack.up.apply(headUp.pointer + k * d, normed.pointer, n: 1, bias: upBias)
        }
    }

    /// Head input `o = (1 − σ(z_head))·up(norm_side(s)) + σ(z_head)·final` for the rows given to
    /// `prepareHead`, `final(k)` pointing at the base's normed output of the k-th of them.
    /// (residual mix: `o = final + (1 − σ(z_head))·up`, in the float order of `ResidualGatedMix`).
    func head(count: Int, final: (Int) -> UnsafePointer<Float>, into o: UnsafeMutablePointer<Float>) {
        let d = config.headSize, residual = config.mix == .residual
        for k in 0..<count {
            let out = o + k * d, up = headUp.pointer + k * d, b = final(k)
            if residual {
                for j in 0..<d { out[j] = b[j] + (1 - headSigma[j]) * up[j] }
            } else {
                for j in 0..<d { out[j] = (1 - headSigma[j]) * up[j] + headSigma[j] * b[j] }
            }
        }
    }
}
