import QSTFormat
import QSTNN

/// OPT (`OPTForCausalLM`): tensors under `model.decoder.`, learned positions, LayerNorm with bias before
/// (125m, ≥ 1.3b) or after (350m) each sub-block, biased attention and FFN (`fc1`, `fc2`), ReLU.
/// Its layers are not LLaMA decoder blocks: `FrozenModel` runs them through `OPTParts`/`OPTBlock`.
public enum OPTFamily: ModelFamily {
    public static let modelTypes = ["opt"]

    /// Only LLaMA-block users (LoRA) call this; they do not support OPT.
    public static func blockWeights(layer: Int, config: ModelConfig, source: WeightSource) throws -> DecoderBlockWeights
    {
        throw QSTError.file(
            source.origin, "OPT layers are not LLaMA decoder blocks (LoRA supports the LLaMA family only)")
    }

    public static let prefix = "model.decoder."
}

/// A LayerNorm's affine parameters as F32 (ones and no bias when `layer_norm_elementwise_affine` is false).
struct OPTNorm {
    let weight: FloatBuffer
    let bias: FloatBuffer?

    static func load(_ s: WeightSource, _ name: String, count: Int, affine: Bool) throws -> OPTNorm {
        guard affine else { return OPTNorm(weight: FloatBuffer([Float](repeating: 1, count: count)), bias: nil) }
        return OPTNorm(
            weight: try WeightLoading.vector(s, name + ".weight", count: count),
            bias: try WeightLoading.vector(s, name + ".bias", count: count))
    }

    /// In place is fine (`out` may equal `x`): each row is read whole before it is written.
    func apply(out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, n: Int, d: Int) {
        LayerNorm.forward(
            out: out, mean: nil, rstd: nil, x: x, weight: weight.constPointer, bias: bias?.constPointer,
            n: n, d: d, eps: OPTLayerWeights.layerNormEps)
    }
}

/// One OPT decoder layer's weights.
struct OPTLayerWeights {
    /// `nn.LayerNorm`'s default, which OPT keeps.
    static let layerNormEps: Float = 1e-5

    let attentionNorm: OPTNorm, ffnNorm: OPTNorm
    let q: any LinearWeights, k: any LinearWeights, v: any LinearWeights, out: any LinearWeights
    let fc1: any LinearWeights, fc2: any LinearWeights

    static func load(layer i: Int, config c: ModelConfig, source s: WeightSource) throws -> OPTLayerWeights {
        let p = OPTFamily.prefix + "layers.\(i).", d = c.hiddenSize, f = c.intermediateSize, b = c.optBias
        return OPTLayerWeights(
            attentionNorm: try OPTNorm.load(s, p + "self_attn_layer_norm", count: d, affine: c.optAffineNorms),
            ffnNorm: try OPTNorm.load(s, p + "final_layer_norm", count: d, affine: c.optAffineNorms),
            q: try WeightLoading.linear(s, p + "self_attn.q_proj", out: d, in: d, bias: b),
            k: try WeightLoading.linear(s, p + "self_attn.k_proj", out: d, in: d, bias: b),
            v: try WeightLoading.linear(s, p + "self_attn.v_proj", out: d, in: d, bias: b),
            out: try WeightLoading.linear(s, p + "self_attn.out_proj", out: d, in: d, bias: b),
            fc1: try WeightLoading.linear(s, p + "fc1", out: f, in: d, bias: b),
            fc2: try WeightLoading.linear(s, p + "fc2", out: d, in: f, bias: b))
    }
}

/// Per-forward activations of one OPT layer, grown on demand and reused by every layer.
final class OPTScratch {
    private(set) var rows = 0
    private(set) var normed = FloatBuffer(count: 0)
    private(set) var q = FloatBuffer(count: 0)
    private(set) var k = FloatBuffer(count: 0)
    private(set) var v = FloatBuffer(count: 0)
    private(set) var attn = FloatBuffer(count: 0)
    private(set) var ffn = FloatBuffer(count: 0)
    let hidden: Int, ffnWidth: Int

    init(hidden: Int, ffnWidth: Int) { self.hidden = hidden; self.ffnWidth = ffnWidth }

    func ensure(rows n: Int) {
        guard n > rows else { return }
        rows = n
        normed = FloatBuffer(count: n * hidden)
        q = FloatBuffer(count: n * hidden); k = FloatBuffer(count: n * hidden); v = FloatBuffer(count: n * hidden)
        attn = FloatBuffer(count: n * hidden)
        ffn = FloatBuffer(count: n * ffnWidth)
    }
}

/// Forward of one OPT decoder layer over the residual stream `x [batch·newTokens, hidden]`, in place.
/// Pre-norm:  x += out(attn(LN1(x)));  x += fc2(act(fc1(LN2(x))))
/// Post-norm: x = LN1(x + out(attn(x)));  x = LN2(x + fc2(act(fc1(x))))
/// The attention kernels scale scores by 1/√head_dim, which is OPT's scaling of q.
enum OPTBlock {
    static func forward(
        x: UnsafeMutablePointer<Float>, batch: Int, newTokens: Int, weights w: OPTLayerWeights,
        config c: ModelConfig, kv: KVSlot, scratch: OPTScratch, context: MatmulContext
    ) {
        let n = batch * newTokens, d = c.hiddenSize, f = c.intermediateSize
        let heads = c.numAttentionHeads, hd = d / heads
        guard n > 0 else { return }
        scratch.ensure(rows: n)
        let pre = c.optLayerNormBefore
        let h = scratch.normed.pointer, q = scratch.q.pointer, k = scratch.k.pointer, v = scratch.v.pointer
        let attn = scratch.attn.pointer, u = scratch.ffn.pointer

        let attnIn: UnsafePointer<Float>
        if pre {
            w.attentionNorm.apply(out: h, x: x, n: n, d: d); attnIn = UnsafePointer(h)
        } else {
            attnIn = UnsafePointer(x)
        }
        w.q.forward(out: q, x: attnIn, n: n, accumulate: false, context: context)
        w.k.forward(out: k, x: attnIn, n: n, accumulate: false, context: context)
        w.v.forward(out: v, x: attnIn, n: n, accumulate: false, context: context)
        for b in 0..<batch {
            let dstRow = b * kv.capacity + kv.pastLength
            (kv.keys + dstRow * d).update(from: k + b * newTokens * d, count: newTokens * d)
            (kv.values + dstRow * d).update(from: v + b * newTokens * d, count: newTokens * d)
        }
        if BLASThreadScope.isSingleThreaded {
            HeadParallelAttention.forward(
                out: attn, q: q, kCache: kv.keys, vCache: kv.values, keyMask: kv.keyMask,
                batch: batch, newTokens: newTokens, pastLength: kv.pastLength,
                capacity: kv.capacity, nHeads: heads, nKVHeads: heads, headDim: hd,
                threads: context.threads)
        } else {
            Attention.forwardCached(
                out: attn, q: q, kCache: kv.keys, vCache: kv.values, keyMask: kv.keyMask,
                batch: batch, newTokens: newTokens, pastLength: kv.pastLength,
                capacity: kv.capacity, nHeads: heads, nKVHeads: heads, headDim: hd)
        }
        w.out.forward(out: x, x: attn, n: n, accumulate: true, context: context)
        if !pre { w.attentionNorm.apply(out: x, x: x, n: n, d: d) }

        let ffnIn: UnsafePointer<Float>
        if pre { w.ffnNorm.apply(out: h, x: x, n: n, d: d); ffnIn = UnsafePointer(h) } else { ffnIn = UnsafePointer(x) }
        w.fc1.forward(out: u, x: ffnIn, n: n, accumulate: false, context: context)
        c.optActivation.forward(out: u, x: u, count: n * f)
        w.fc2.forward(out: x, x: u, n: n, accumulate: true, context: context)
        if !pre { w.ffnNorm.apply(out: x, x: x, n: n, d: d) }
    }
}
