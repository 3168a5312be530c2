import Foundation
import QSTNN

/// What one downsampler application keeps for backward. Only trainable downsamplers keep anything:
/// the (dropped-out) input for the weight gradient and the small intermediates of the adapter.
final class DownsampleTape {
    var rows = 0
    /// Input after dropout `[n, d]` (adapter, linear): the only full-width activation training keeps.
    var input = FloatBuffer(count: 0)
    /// Adapter: pre-activation `[n, h]`, pre-norm output `[n, w]`, LayerNorm statistics `[n]`.
    var preActivation = FloatBuffer(count: 0)
    var preNorm = FloatBuffer(count: 0)
    var mean = FloatBuffer(count: 0)
    var rstd = FloatBuffer(count: 0)

    func reserve(rows n: Int, config c: SideConfig) {
        rows = n
        let d = c.base.hiddenSize, w = c.width
        func ensure(_ b: inout FloatBuffer, _ count: Int) { if b.count < count { b = FloatBuffer(count: count) } }
        switch c.downsample {
        case .adapter:
            ensure(&input, n * d); ensure(&preActivation, n * c.adapterHidden); ensure(&preNorm, n * w)
            ensure(&mean, n); ensure(&rstd, n)
        case .linear:
            ensure(&input, n * d)
        case .avgpool, .maxpool:
            break
        }
    }

    /// Bytes this tape holds for `n` rows.
    static func bytes(rows n: Int, config c: SideConfig) -> Int {
        let d = c.base.hiddenSize, w = c.width
        switch c.downsample {
        case .adapter: return 4 * n * (d + c.adapterHidden + w + 2)
        case .linear: return 4 * n * d
        case .avgpool, .maxpool: return 0
        }
    }
}

/// The downsampler `down_i: [n, d] → [n, d/r]` of layer `i`, forward and backward.
/// LayerNorm inside the adapter uses PyTorch's default eps 1e-5.
enum Downsampler {
    static let layerNormEps: Float = 1e-5

    /// `out = down_i(h)`. With a `tape`, saves what backward needs and applies dropout with `rng`, or
    /// per example with `streams` when given (training); without one, runs as in evaluation (no dropout).
    static func forward(
        layer i: Int, weights: SideWeights, h: UnsafePointer<Float>, n: Int,
        out: UnsafeMutablePointer<Float>, tape: DownsampleTape?, rng: inout SplitMix64,
        scratch: FloatBuffer, streams: DropoutStreams? = nil
    ) {
        let c = weights.config, d = c.base.hiddenSize, w = c.width
        let p = c.downsamplePrefix(i)
        switch c.downsample {
        case .avgpool, .maxpool:
            FeaturePool.forward(out: out, x: h, n: n, d: d, r: c.r, kind: c.downsample == .avgpool ? .average : .max)
        case .linear:
            let x = dropped(h, n: n, d: d, tape: tape, p: c.dropout, rng: &rng, streams: streams)
            Linear.forward(
                out: out, x: x, weight: weights.value(p + "weight"), bias: nil,
                n: n, inFeatures: d, outFeatures: w)
        case .adapter:
            let hid = c.adapterHidden
            let x = dropped(h, n: n, d: d, tape: tape, p: c.dropout, rng: &rng, streams: streams)
            // Without a tape the intermediates go to scratch (n·(h + w) floats).
            let u = tape?.preActivation.pointer ?? scratch.pointer
            let y = tape?.preNorm.pointer ?? (scratch.pointer + n * hid)
            Linear.forward(
                out: u, x: x, weight: weights.value(p + "adapter_A.weight"), bias: nil,
                n: n, inFeatures: d, outFeatures: hid)
            let a = FloatBuffer(count: n * hid)
            c.activation.op.forward(out: a.pointer, x: u, count: n * hid)
            Linear.forward(
                out: y, x: a.pointer, weight: weights.value(p + "adapter_B.weight"), bias: nil,
                n: n, inFeatures: hid, outFeatures: w)
            LayerNorm.forward(
                out: out, mean: tape?.mean.pointer, rstd: tape?.rstd.pointer, x: y,
                weight: weights.value(p + "post_layer_norm.weight"),
                bias: weights.value(p + "post_layer_norm.bias"), n: n, d: w, eps: layerNormEps)
        }
    }

    /// Scratch floats `forward` needs without a tape.
    static func scratchCount(rows n: Int, config c: SideConfig) -> Int {
        c.downsample == .adapter ? n * (c.adapterHidden + c.width) : 0
    }

    /// Accumulates the weight gradients of `down_i` from `dout [n, w]` (the frozen input needs no gradient).
    static func backward(layer i: Int, weights: SideWeights, dout: UnsafePointer<Float>, tape: DownsampleTape) {
        let c = weights.config, d = c.base.hiddenSize, w = c.width, n = tape.rows
        let p = c.downsamplePrefix(i)
        switch c.downsample {
        case .avgpool, .maxpool:
            return
        case .linear:
            Linear.backward(
                dx: nil, dweight: weights.grad(p + "weight"), dbias: nil, dout: dout,
                x: tape.input.pointer, weight: weights.value(p + "weight"),
                n: n, inFeatures: d, outFeatures: w)
        case .adapter:
            let hid = c.adapterHidden
            let dy = FloatBuffer(count: n * w)
            LayerNorm.backward(
                dx: dy.pointer, dweight: weights.grad(p + "post_layer_norm.weight"),
                dbias: weights.grad(p + "post_layer_norm.bias"), dout: dout, x: tape.preNorm.pointer,
                weight: weights.value(p + "post_layer_norm.weight"), mean: tape.mean.pointer,
                rstd: tape.rstd.pointer, n: n, d: w)
            let a = FloatBuffer(count: n * hid)
            c.activation.op.forward(out: a.pointer, x: tape.preActivation.pointer, count: n * hid)
            let da = FloatBuffer(count: n * hid)
            Linear.backward(
                dx: da.pointer, dweight: weights.grad(p + "adapter_B.weight"), dbias: nil,
                dout: dy.pointer, x: a.pointer, weight: weights.value(p + "adapter_B.weight"),
                n: n, inFeatures: hid, outFeatures: w)
            let du = FloatBuffer(count: n * hid)
            c.activation.op.backward(dx: du.pointer, dout: da.pointer, x: tape.preActivation.pointer, count: n * hid)
            Linear.backward(
                dx: nil, dweight: weights.grad(p + "adapter_A.weight"), dbias: nil, dout: du.pointer,
                x: tape.input.pointer, weight: weights.value(p + "adapter_A.weight"),
                n: n, inFeatures: d, outFeatures: hid)
        }
    }

    /// Dropout into the tape's input buffer (training) or the input itself (evaluation).
    private static func dropped(
        _ h: UnsafePointer<Float>, n: Int, d: Int, tape: DownsampleTape?, p: Float,
        rng: inout SplitMix64, streams: DropoutStreams?
    ) -> UnsafePointer<Float> {
        guard let tape else { return h }
        let count = n * d
        if p > 0, let streams, streams.keys.count * streams.seqLen == n {
            let mask = Buffer<UInt8>(count: count)
            Dropout.forward(out: tape.input.pointer, mask: mask.pointer, x: h, width: d, p: p, streams: streams)
        } else if p > 0 {
            let mask = Buffer<UInt8>(count: count)
            Dropout.forward(out: tape.input.pointer, mask: mask.pointer, x: h, count: count, p: p, rng: &rng)
        } else {
            tape.input.pointer.update(from: h, count: count)
        }
        return UnsafePointer(tape.input.pointer)
    }
}
