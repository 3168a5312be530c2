import Foundation
import QSTNN

/// An OPT side block during inference (beside the base, with the side's own KV cache): the same formulas as
/// `OPTSideBlock.forward`, one step of `newTokens` rows per sequence, in the serial ops of `SideInferenceOps`.
enum OPTSideInference {
    /// The block's tensors as pointers (biases nil when the base has `enable_bias: false`).
    struct Layer: SideInferenceBlock {
        let q, k, v, o, fc1, fc2: UnsafePointer<Float>
        let qb, kb, vb, ob, fc1b, fc2b: UnsafePointer<Float>?
        let ln1w, ln1b, ln2w, ln2b: UnsafePointer<Float>
        /// Ones then zeros (`[2w]`): the LayerNorms' parameters when the base's norms are not affine.
        let plain: FloatBuffer

        init(weights W: SideWeights, layer i: Int) {
            let nm = OPTSideBlock.Names(i), w = W.config.width
            plain = FloatBuffer([Float](repeating: 1, count: w) + [Float](repeating: 0, count: w))
            let plainW = plain.constPointer, plainB = plain.constPointer + w
            func p(_ name: String) -> UnsafePointer<Float> { UnsafePointer(W.value(name)) }
            func lnw(_ name: String) -> UnsafePointer<Float> {
                W.spec(name + ".weight") == nil ? plainW : p(name + ".weight")
            }
            func lnb(_ name: String) -> UnsafePointer<Float> {
                W.spec(name + ".bias") == nil ? plainB : p(name + ".bias")
            }
            func b(_ name: String) -> UnsafePointer<Float>? { W.spec(name + ".bias") == nil ? nil : p(name + ".bias") }
            q = p(nm.q + ".weight"); k = p(nm.k + ".weight"); v = p(nm.v + ".weight"); o = p(nm.o + ".weight")
            fc1 = p(nm.fc1 + ".weight"); fc2 = p(nm.fc2 + ".weight")
            qb = b(nm.q); kb = b(nm.k); vb = b(nm.v); ob = b(nm.o); fc1b = b(nm.fc1); fc2b = b(nm.fc2)
            ln1w = lnw(nm.ln1); ln1b = lnb(nm.ln1); ln2w = lnw(nm.ln2); ln2b = lnb(nm.ln2)
        }

        func step(
            layer i: Int, config: SideConfig, ws: SideRunner.Workspace, n: Int, newTokens: Int, cache: SideKVCache,
            threads: Int
        ) {
            OPTSideInference.block(
                self, config: config, ws: ws, n: n, newTokens: newTokens, cache: cache, layer: i,
                threads: threads)
        }
    }

    /// Updates the side stream `ws.stream [n, w]` in place; stores the step's keys and values in `cache`.
    static func block(
        _ L: Layer, config c: SideConfig, ws: SideRunner.Workspace, n: Int, newTokens: Int,
        cache: SideKVCache, layer i: Int, threads: Int
    ) {
        let w = c.width, f = c.intermediate, eps = OPTSideBlock.layerNormEps, x = ws.stream.pointer
        let pre = c.base.optLayerNormBefore
        let attnIn: UnsafePointer<Float>
        if pre {
            SideInferenceOps.layerNorm(ws.normed.pointer, x, L.ln1w, L.ln1b, n: n, d: w, eps: eps)
            attnIn = UnsafePointer(ws.normed.pointer)
        } else {
            attnIn = UnsafePointer(x)
        }
        SideInferenceOps.linear(ws.q.pointer, attnIn, L.q, bias: L.qb, n: n, inF: w, outF: w)
        SideInferenceOps.linear(ws.k.pointer, attnIn, L.k, bias: L.kb, n: n, inF: w, outF: w)
        SideInferenceOps.linear(ws.v.pointer, attnIn, L.v, bias: L.vb, n: n, inF: w, outF: w)
        cache.store(layer: i, k: ws.k.pointer, v: ws.v.pointer, newTokens: newTokens)
        SideCachedAttention.forward(
            out: ws.attn.pointer, q: ws.q.pointer, cache: cache, layer: i, newTokens: newTokens,
            heads: c.heads, threads: threads)
        SideInferenceOps.linear(x, ws.attn.pointer, L.o, bias: L.ob, n: n, inF: w, outF: w, accumulate: true)
        let ffnIn: UnsafePointer<Float>
        if pre {
            SideInferenceOps.layerNorm(ws.normed.pointer, x, L.ln2w, L.ln2b, n: n, d: w, eps: eps)
            ffnIn = UnsafePointer(ws.normed.pointer)
        } else {
            SideInferenceOps.layerNorm(ws.normed.pointer, x, L.ln1w, L.ln1b, n: n, d: w, eps: eps)
            x.update(from: ws.normed.pointer, count: n * w)
            ffnIn = UnsafePointer(x)
        }
        SideInferenceOps.linear(ws.gate.pointer, ffnIn, L.fc1, bias: L.fc1b, n: n, inF: w, outF: f)
        SideInferenceOps.activate(ws.gate.pointer, count: n * f, c.blockActivation)
        SideInferenceOps.linear(x, ws.gate.pointer, L.fc2, bias: L.fc2b, n: n, inF: f, outF: w, accumulate: true)
        if !pre {
            SideInferenceOps.layerNorm(ws.normed.pointer, x, L.ln2w, L.ln2b, n: n, d: w, eps: eps)
            x.update(from: ws.normed.pointer, count: n * w)
        }
    }
}
