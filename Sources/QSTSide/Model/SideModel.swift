import Foundation
import QSTEngine
import QSTFormat
import QSTNN

/// Token ids plus next-token targets: `labels[b·T + t]` is the token position `t` should predict, or
/// `ChunkedCrossEntropy.ignoreIndex` (prompt, padding, last position).
public struct SideBatch: Sendable {
    public var tokens: TokenBatch
    public var labels: [Int32]
    /// Per-example dropout keys (`DropoutStreams`); nil draws dropout from the `rng` of `trainStep`.
    public var dropoutKeys: [UInt64]?
    /// Regression targets (classification head with K = 1), `[batch·seqLen]`, read at the labelled positions.
    public var targets: [Float]?
    public init(tokens: TokenBatch, labels: [Int32], targets: [Float]? = nil) {
        precondition(labels.count == tokens.ids.count, "labels must be batch × seqLen")
        precondition(targets.map { $0.count == labels.count } ?? true, "targets must be batch × seqLen")
        self.tokens = tokens; self.labels = labels; self.targets = targets
    }
    public var labelledCount: Int { labels.reduce(0) { $1 == ChunkedCrossEntropy.ignoreIndex ? $0 : $0 + 1 } }
}

/// The frozen backbone and the side network together (QST):
///   s = down_0(h_0); for layer i: s = block_i((1 − σ(z_i))·down_i(h_{i+1}) + σ(z_i)·s)
///   o = (1 − σ(z_head))·up(norm_side(s)) + σ(z_head)·norm(h_N);  logits = lm_head(o)
///   (residual head mix: o = norm(h_N) + (1 − σ(z_head))·up(norm_side(s)), SideConfig.HeadMix)
/// (down_0 is applied both to the embeddings and after layer 0, as in the reference). The backbone only
/// runs forward; gradients flow through the side network alone.
public final class SideModel {
    public let weights: SideWeights
    public let backbone: any FrozenBackbone
    let invFreq: [Float]
    private var tapeCache: SideForwardTape?
    /// Serves the frozen states of training batches instead of the backbone (`BaseStateCache`); nil runs it.
    public var frozenStateProvider: (any FrozenStateProvider)?

    public init(weights: SideWeights, backbone: any FrozenBackbone) throws {
        let c = weights.config.base
        try c.checkRuns(
            beside: backbone, side: "side network", base: (backbone as? FrozenModel)?.source.origin ?? "the base model")
        self.weights = weights
        self.backbone = backbone
        invFreq = RoPE.inverseFrequencies(headDim: weights.config.headDim, theta: c.ropeTheta)
    }

    var config: SideConfig { weights.config }

    /// Streams the backbone and runs the side network beside it. With `train`, keeps what backward needs
    /// in `tape` and applies dropout from `rng`. Returns the head input `o [n, d]` (and leaves pieces in tape).
    /// `labels` (training) lets a `frozenStateProvider` serve the frozen states.
    func forward(
        _ tokens: TokenBatch, tape: SideForwardTape?, rng: inout SplitMix64,
        labels: [Int32]? = nil, dropoutKeys: [UInt64]? = nil
    ) throws -> FloatBuffer {
        let c = config, L = c.base.layerCount, w = c.width, d = c.headSize
        let g = SideBatchGeometry(config: c, lengths: tokens.lengths, seqLen: tokens.seqLen, invFreq: invFreq)
        let n = g.rows
        let ws = tape?.workspace(for: g) ?? SideBlockWorkspace(config: c, geometry: g)
        let scratch = FloatBuffer(count: Downsampler.scratchCount(rows: n, config: c))
        var stream = tape?.streams[0] ?? FloatBuffer(count: n * w)
        let scratchDown = FloatBuffer(count: n * w), mixed = FloatBuffer(count: n * w)
        var localRNG = rng
        // One application of the side network to the frozen state v; `down` fills down_v(h_v).
        func consume(_ v: Int, _ down: (UnsafeMutablePointer<Float>, DownsampleTape?) -> Void) throws {
            guard v >= 0, v <= L else { throw QSTError("backbone visited hidden state \(v) outside 0...\(L)") }
            let layer = max(0, v - 1)
            let dt = tape?.downsample[v]
            dt?.reserve(rows: n, config: c)
            let target = v == 0 ? stream : (tape?.down[layer] ?? scratchDown)
            down(target.pointer, dt)
            guard v > 0 else { return }
            GatedMix.forward(
                out: mixed.pointer, a: target.pointer, b: stream.pointer,
                z: weights.value(c.gateName(layer)), n: n, d: w)
            let next = tape?.streams[v] ?? FloatBuffer(count: n * w)
            c.base.family.blockForward(
                layer: layer, weights: weights, x: mixed.pointer, out: next.pointer, geometry: g, ws: ws)
            stream = next
        }
        let hN: [Float]
        if let provider = frozenStateProvider, let labels {
            hN = try provider.frozenStates(SideBatch(tokens: tokens, labels: labels), model: self) { v, states in
                try consume(v) { target, _ in target.update(from: states, count: n * w) }
            }
        } else {
            hN = try backbone.forwardHiddenStates(tokens) { v, h in
                try consume(v) { target, dt in
                    Downsampler.forward(
                        layer: max(0, v - 1), weights: weights, h: h, n: n, out: target, tape: dt,
                        rng: &localRNG, scratch: scratch,
                        streams: dropoutKeys.map { DropoutStreams(keys: $0, seqLen: tokens.seqLen, call: v) })
                }
            }
        }
        rng = localRNG
        guard hN.count == n * d else {
            throw QSTError("backbone returned \(hN.count) floats for norm(h_N), expected \(n)·\(d)")
        }
        // Head: o = (1 − σ(z_head))·up(norm_side(s)) + σ(z_head)·norm(h_N), or with the residual mix
        // o = norm(h_N) + (1 − σ(z_head))·up(norm_side(s)).
        let normed = tape?.headNormed ?? FloatBuffer(count: n * w)
        let rstd = tape?.headRstd ?? FloatBuffer(count: n), mean = tape?.headMean ?? FloatBuffer(count: n)
        SideHeadNorm.forward(
            weights: weights, out: normed.pointer, mean: mean.pointer, rstd: rstd.pointer,
            x: stream.pointer, n: n)
        let up = tape?.headUp ?? FloatBuffer(count: n * d)
        Linear.forward(
            out: up.pointer, x: normed.pointer, weight: weights.value("upsample.weight"),
            bias: weights.value("upsample.bias"), n: n, inFeatures: w, outFeatures: d)
        let base = tape?.headBase ?? FloatBuffer(count: n * d)
        hN.withUnsafeBufferPointer { base.pointer.update(from: $0.baseAddress!, count: n * d) }
        let o = FloatBuffer(count: n * d)
        switch c.mix {
        case .gated:
            GatedMix.forward(out: o.pointer, a: up.pointer, b: base.pointer, z: weights.value("lm_head_z"), n: n, d: d)
        case .residual:
            ResidualGatedMix.forward(
                out: o.pointer, a: up.pointer, b: base.pointer, z: weights.value("lm_head_z"),
                n: n, d: d)
        }
        tape?.geometry = g
        return o
    }

    /// One training micro-batch: forward, chunked cross-entropy at the labelled positions, backward.
    /// Gradients are ADDED to `weights.grads` scaled by `gradScale` (default 1/labelled count).
    public func trainStep(
        _ batch: SideBatch, rng: inout SplitMix64,
        gradScale: Float? = nil
    ) throws -> ChunkedCrossEntropy.Result {
        let c = config, L = c.base.layerCount, w = c.width, d = c.headSize
        // Tapes are reused across steps (grown when a batch is larger) to avoid re-faulting fresh pages.
        let rows = batch.tokens.ids.count
        let tape = (tapeCache?.capacity ?? 0) >= rows ? tapeCache! : SideForwardTape(config: c, rows: rows)
        tapeCache = tape
        let o = try forward(batch.tokens, tape: tape, rng: &rng, labels: batch.labels, dropoutKeys: batch.dropoutKeys)
        guard let g = tape.geometry else { throw QSTError("side forward did not record its batch geometry") }
        let n = g.rows
        let dO = FloatBuffer(count: n * d)
        let result: ChunkedCrossEntropy.Result
        do {
            if c.numLabels != nil {
                // Classification head: the frozen LM head is not used at all.
                result = try ClassificationHead.lossAndGradient(
                    weights: weights, hidden: o, batch: batch,
                    dHidden: dO.pointer, gradScale: gradScale)
            } else {
                result = try batch.labels.withUnsafeBufferPointer { lp in
                    try ChunkedCrossEntropy.lossAndGradient(
                        hidden: o.pointer, labels: lp.baseAddress!, n: n,
                        head: backbone.headRows(), dHidden: dO.pointer,
                        gradScale: gradScale)
                }
            }
        }
        guard result.count > 0 else { return result }
        // Backward with OpenBLAS at one thread and its products split over the pool (Linear.splitRows), as
        // inside the engine's forward: OpenBLAS's idle workers would otherwise spin (sched_yield) against the
        // pool's through the side network's many short loops (measured: BENCHMARKS.md §19).
        EngineBLAS.singleThreaded {
            // Head backward.
            let dUp = FloatBuffer(count: n * d)
            switch c.mix {
            case .gated:
                GatedMix.backward(
                    da: dUp.pointer, db: nil, dz: weights.grad("lm_head_z"), dout: dO.pointer,
                    a: tape.headUp.pointer, b: tape.headBase.pointer, z: weights.value("lm_head_z"), n: n, d: d)
            case .residual:
                ResidualGatedMix.backward(
                    da: dUp.pointer, db: nil, dz: weights.grad("lm_head_z"), dout: dO.pointer,
                    a: tape.headUp.pointer, z: weights.value("lm_head_z"), n: n, d: d)
            }
            let dNormed = FloatBuffer(count: n * w)
            Linear.backward(
                dx: dNormed.pointer, dweight: weights.grad("upsample.weight"),
                dbias: weights.grad("upsample.bias"), dout: dUp.pointer, x: tape.headNormed.pointer,
                weight: weights.value("upsample.weight"), n: n, inFeatures: w, outFeatures: d)
            var ds = FloatBuffer(count: n * w)
            SideHeadNorm.backward(
                weights: weights, dx: ds.pointer, dout: dNormed.pointer, x: tape.streams[L].pointer,
                mean: tape.headMean.pointer, rstd: tape.headRstd.pointer, n: n)
            // Side stream backward, last layer first.
            let ws = tape.workspace(for: g)
            let mixed = FloatBuffer(count: n * w), blockOut = FloatBuffer(count: n * w)
            let dMixed = FloatBuffer(count: n * w), dDown = FloatBuffer(count: n * w)
            for i in stride(from: L - 1, through: 0, by: -1) {
                let z = weights.value(c.gateName(i))
                GatedMix.forward(
                    out: mixed.pointer, a: tape.down[i].pointer, b: tape.streams[i].pointer, z: z, n: n, d: w)
                // The workspace still holds the last block's forward; earlier blocks are recomputed.
                if i != L - 1 {
                    c.base.family.blockForward(
                        layer: i, weights: weights, x: mixed.pointer, out: blockOut.pointer,
                        geometry: g, ws: ws)
                }
                c.base.family.blockBackward(
                    layer: i, weights: weights, x: mixed.pointer, dout: ds.pointer,
                    dx: dMixed.pointer, geometry: g, ws: ws)
                let dPrev = FloatBuffer(count: n * w)
                dDown.zero()
                GatedMix.backward(
                    da: dDown.pointer, db: dPrev.pointer, dz: weights.grad(c.gateName(i)),
                    dout: dMixed.pointer, a: tape.down[i].pointer, b: tape.streams[i].pointer, z: z,
                    n: n, d: w)
                if c.downsample.isTrainable {
                    Downsampler.backward(layer: i, weights: weights, dout: dDown.pointer, tape: tape.downsample[i + 1])
                }
                ds = dPrev
            }
            if c.downsample.isTrainable {
                Downsampler.backward(layer: 0, weights: weights, dout: ds.pointer, tape: tape.downsample[0])
            }
        }
        return result
    }

    /// Forward without dropout or tapes: the head input `o [n, d]` for every position.
    public func outputHidden(_ tokens: TokenBatch) throws -> FloatBuffer {
        var rng = SplitMix64(seed: 0)
        return try forward(tokens, tape: nil, rng: &rng)
    }

    /// `outputHidden` for an evaluation batch; with a `frozenStateProvider` the frozen states come from it (a
    /// pooling downsampler has no dropout, so this is the evaluation forward's output at the labelled rows, bit
    /// for bit: the provider's states are the row-independent forward's).
    public func evaluationHidden(_ batch: SideBatch) throws -> FloatBuffer {
        var rng = SplitMix64(seed: 0)
        return try forward(batch.tokens, tape: nil, rng: &rng, labels: frozenStateProvider == nil ? nil : batch.labels)
    }

    /// Evaluation loss (no gradient) at the labelled positions.
    public func evaluationLoss(_ batch: SideBatch) throws -> ChunkedCrossEntropy.Result {
        let o = try outputHidden(batch.tokens)
        do {
            if config.numLabels != nil {
                return try ClassificationHead.lossAndGradient(weights: weights, hidden: o, batch: batch, dHidden: nil)
            }
            return try batch.labels.withUnsafeBufferPointer { lp in
                try ChunkedCrossEntropy.lossAndGradient(
                    hidden: o.pointer, labels: lp.baseAddress!,
                    n: batch.labels.count, head: backbone.headRows(), dHidden: nil)
            }
        }
    }
}

/// Everything a training forward keeps for backward: one downsampler tape per application (L + 1),
/// the side stream before each layer's gate (x_0 … x_L), each layer's downsampled input, the head pieces.
final class SideForwardTape {
    let downsample: [DownsampleTape]
    let streams: [FloatBuffer]
    let down: [FloatBuffer]
    let headNormed, headRstd, headMean, headUp, headBase: FloatBuffer
    var geometry: SideBatchGeometry?
    private var ws: SideBlockWorkspace?

    let config: SideConfig
    /// Rows every buffer can hold.
    let capacity: Int

    init(config c: SideConfig, rows n: Int) {
        config = c
        capacity = n
        let L = c.base.layerCount, w = c.width, d = c.headSize
        downsample = (0...L).map { _ in DownsampleTape() }
        streams = (0...L).map { _ in FloatBuffer(count: n * w) }
        down = (0..<L).map { _ in FloatBuffer(count: n * w) }
        headNormed = FloatBuffer(count: n * w); headRstd = FloatBuffer(count: n); headMean = FloatBuffer(count: n)
        headUp = FloatBuffer(count: n * d); headBase = FloatBuffer(count: n * d)
    }

    func workspace(for g: SideBatchGeometry) -> SideBlockWorkspace {
        if let ws, ws.rows >= g.rows, ws.probs.count >= g.shape.probsCount { return ws }
        let fresh = SideBlockWorkspace(config: config, geometry: g)
        ws = fresh
        return fresh
    }
}
