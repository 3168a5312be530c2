import Foundation
import QSTNN

/// One side block for an OPT base: an OPT decoder layer at width w = d/r (reference `modeling_opt_qst.py`:
/// `OPTDecoderLayer` built from the config with hidden_size / r and ffn_dim / r), named
/// `model.decoder.qst_layers.{i}.…` as the reference's state dict. With the base's `do_layer_norm_before`:
///   pre-norm:  r1 = x + out(attn(LN1(x)));  y = r1 + fc2(act(fc1(LN2(r1))))
///   post-norm: h1 = LN1(x + out(attn(x)));  y = LN2(h1 + fc2(act(fc1(h1))))
/// Every linear has a bias unless the base has `enable_bias: false`. No RoPE: the side stream carries the
/// positions the base's learned embeddings put into h_0.
enum OPTSideBlock {
    static let layerNormEps: Float = 1e-5

    struct Names {
        let q, k, v, o, ln1, fc1, fc2, ln2: String
        init(_ i: Int) {
            let p = "model.decoder.qst_layers.\(i)."
            q = p + "self_attn.q_proj"; k = p + "self_attn.k_proj"; v = p + "self_attn.v_proj";
            o = p + "self_attn.out_proj"
            ln1 = p + "self_attn_layer_norm"; fc1 = p + "fc1"; fc2 = p + "fc2"; ln2 = p + "final_layer_norm"
        }
    }

    /// The OPT blocks and head in the reference's state-dict order (after the downsamplers and gates):
    /// `final_layer_norm_qst` (pre-norm bases only), the layers (k, v, q, out, self_attn_layer_norm, fc1, fc2,
    /// final_layer_norm), then `upsample` and `lm_head_z`. PyTorch's default init: linear weights and biases
    /// U(±1/√fan_in), LayerNorm ones and zeros.
    static func layout(config c: SideConfig, add: SideLayoutAdd) {
        let w = c.width, f = c.intermediate, e = c.headSize, bias = c.base.optBias
        func norm(_ name: String) {
            guard c.base.optAffineNorms else { return }
            add(name + ".weight", [w], .ones, 0, 0, false)
            add(name + ".bias", [w], .zeros, 0, 0, false)
        }
        func linear(_ name: String, out: Int, in fanIn: Int) {
            add(name + ".weight", [out, fanIn], .uniformFanIn, fanIn, 0, true)
            if bias { add(name + ".bias", [out], .uniformFanIn, fanIn, 0, false) }
        }
        if let n = c.headNormName { norm(n) }
        for i in 0..<c.base.layerCount {
            let nm = Names(i)
            linear(nm.k, out: w, in: w); linear(nm.v, out: w, in: w); linear(nm.q, out: w, in: w);
            linear(nm.o, out: w, in: w)
            norm(nm.ln1)
            linear(nm.fc1, out: f, in: w); linear(nm.fc2, out: w, in: f)
            norm(nm.ln2)
        }
        add("upsample.weight", [e, w], c.upsampleInit, w, 0, true)
        add("upsample.bias", [e], c.upsampleInit, w, 0, false)
        // Gated: −1 here is the reference's +1 (its head mixes the other way round, see SideExportMapping).
        add("lm_head_z", [e], .constant, 0, c.mix == .gated ? -1 : c.headGateInit, false)
    }

    private static func value(_ W: SideWeights, _ name: String) -> UnsafeMutablePointer<Float>? {
        W.spec(name) == nil ? nil : W.value(name)
    }
    private static func grad(_ W: SideWeights, _ name: String) -> UnsafeMutablePointer<Float>? {
        W.spec(name) == nil ? nil : W.grad(name)
    }

    private static func linear(
        _ W: SideWeights, _ name: String, out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>,
        n: Int, inF: Int, outF: Int, accumulate: Bool = false
    ) {
        Linear.forward(
            out: out, x: x, weight: W.value(name + ".weight"), bias: value(W, name + ".bias"),
            n: n, inFeatures: inF, outFeatures: outF, accumulate: accumulate)
    }

    private static func linearBackward(
        _ W: SideWeights, _ name: String, dx: UnsafeMutablePointer<Float>?,
        dout: UnsafePointer<Float>, x: UnsafePointer<Float>, n: Int, inF: Int, outF: Int
    ) {
        Linear.backward(
            dx: dx, dweight: W.grad(name + ".weight"), dbias: grad(W, name + ".bias"), dout: dout, x: x,
            weight: W.value(name + ".weight"), n: n, inFeatures: inF, outFeatures: outF)
    }

    /// LayerNorm `name` (its `.weight` and `.bias`; plain normalisation when the base's norms are not affine).
    static func norm(
        _ W: SideWeights, _ name: String, out: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>,
        rstd: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, n: Int, d: Int
    ) {
        guard W.spec(name + ".weight") != nil else {
            let ones = FloatBuffer([Float](repeating: 1, count: d))
            LayerNorm.forward(
                out: out, mean: mean, rstd: rstd, x: x, weight: ones.constPointer, bias: nil, n: n, d: d,
                eps: layerNormEps)
            return
        }
        LayerNorm.forward(
            out: out, mean: mean, rstd: rstd, x: x, weight: W.value(name + ".weight"),
            bias: W.value(name + ".bias"), n: n, d: d, eps: layerNormEps)
    }

    static func normBackward(
        _ W: SideWeights, _ name: String, dx: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
        x: UnsafePointer<Float>, mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, n: Int, d: Int
    ) {
        guard W.spec(name + ".weight") != nil else {
            let ones = FloatBuffer([Float](repeating: 1, count: d))
            LayerNorm.backward(
                dx: dx, dweight: nil, dbias: nil, dout: dout, x: x, weight: ones.constPointer, mean: mean,
                rstd: rstd, n: n, d: d)
            return
        }
        LayerNorm.backward(
            dx: dx, dweight: W.grad(name + ".weight"), dbias: W.grad(name + ".bias"), dout: dout, x: x,
            weight: W.value(name + ".weight"), mean: mean, rstd: rstd, n: n, d: d)
    }

    /// `out = block_i(x)`, leaving every intermediate in `ws`. `out` must not alias `x`.
    static func forward(
        layer i: Int, weights W: SideWeights, x: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>,
        geometry g: SideBatchGeometry, ws: SideBlockWorkspace
    ) {
        let c = W.config, nm = Names(i), n = g.rows, w = c.width, f = c.intermediate, act = c.blockActivation
        let pre = c.base.optLayerNormBefore
        let attnIn: UnsafePointer<Float>
        if pre {
            norm(W, nm.ln1, out: ws.normed1.pointer, mean: ws.mean1.pointer, rstd: ws.rstd1.pointer, x: x, n: n, d: w)
            attnIn = UnsafePointer(ws.normed1.pointer)
        } else {
            attnIn = x
        }
        linear(W, nm.q, out: ws.q.pointer, x: attnIn, n: n, inF: w, outF: w)
        linear(W, nm.k, out: ws.k.pointer, x: attnIn, n: n, inF: w, outF: w)
        linear(W, nm.v, out: ws.v.pointer, x: attnIn, n: n, inF: w, outF: w)
        SideAttention.forward(
            out: ws.attn.pointer, probs: ws.probs.pointer, q: ws.q.pointer, k: ws.k.pointer,
            v: ws.v.pointer, lengths: g.lengths, shape: g.shape)
        ws.resid1.pointer.update(from: x, count: n * w)
        linear(W, nm.o, out: ws.resid1.pointer, x: ws.attn.pointer, n: n, inF: w, outF: w, accumulate: true)
        if pre {
            norm(
                W, nm.ln2, out: ws.normed2.pointer, mean: ws.mean2.pointer, rstd: ws.rstd2.pointer,
                x: ws.resid1.pointer,
                n: n, d: w)
            linear(W, nm.fc1, out: ws.gate.pointer, x: ws.normed2.pointer, n: n, inF: w, outF: f)
            act.forward(out: ws.act.pointer, x: ws.gate.pointer, count: n * f)
            out.update(from: ws.resid1.pointer, count: n * w)
            linear(W, nm.fc2, out: out, x: ws.act.pointer, n: n, inF: f, outF: w, accumulate: true)
        } else {
            norm(
                W, nm.ln1, out: ws.normed1.pointer, mean: ws.mean1.pointer, rstd: ws.rstd1.pointer,
                x: ws.resid1.pointer,
                n: n, d: w)
            linear(W, nm.fc1, out: ws.gate.pointer, x: ws.normed1.pointer, n: n, inF: w, outF: f)
            act.forward(out: ws.act.pointer, x: ws.gate.pointer, count: n * f)
            ws.resid2.pointer.update(from: ws.normed1.pointer, count: n * w)
            linear(W, nm.fc2, out: ws.resid2.pointer, x: ws.act.pointer, n: n, inF: f, outF: w, accumulate: true)
            norm(W, nm.ln2, out: out, mean: ws.mean2.pointer, rstd: ws.rstd2.pointer, x: ws.resid2.pointer, n: n, d: w)
        }
    }

    /// Given `dout` and the intermediates `forward(x)` left in `ws`, writes `dx` (overwriting) and
    /// accumulates the block's weight gradients.
    static func backward(
        layer i: Int, weights W: SideWeights, x: UnsafePointer<Float>, dout: UnsafePointer<Float>,
        dx: UnsafeMutablePointer<Float>, geometry g: SideBatchGeometry, ws: SideBlockWorkspace
    ) {
        let c = W.config, nm = Names(i), n = g.rows, w = c.width, f = c.intermediate, act = c.blockActivation
        let pre = c.base.optLayerNormBefore
        let dR = ws.dResid1.pointer, dH = ws.dNormed.pointer
        // FFN branch: ends with dR = gradient at r1 (pre-norm) or at h1 (post-norm, in dH).
        let ffnIn = pre ? ws.normed2.pointer : ws.normed1.pointer
        let dFFNOut: UnsafePointer<Float>
        if pre {
            dR.update(from: dout, count: n * w)
            dFFNOut = dout
        } else {
            ws.dResid1.zero()
            normBackward(
                W, nm.ln2, dx: dR, dout: dout, x: ws.resid2.pointer, mean: ws.mean2.pointer,
                rstd: ws.rstd2.pointer, n: n, d: w)
            dFFNOut = UnsafePointer(dR)
        }
        ws.dAct.zero()
        linearBackward(W, nm.fc2, dx: ws.dAct.pointer, dout: dFFNOut, x: ws.act.pointer, n: n, inF: f, outF: w)
        ws.dGate.zero()
        act.backward(dx: ws.dGate.pointer, dout: ws.dAct.pointer, x: ws.gate.pointer, count: n * f)
        if pre { ws.dNormed.zero() } else { dH.update(from: dR, count: n * w) }
        linearBackward(W, nm.fc1, dx: dH, dout: ws.dGate.pointer, x: ffnIn, n: n, inF: w, outF: f)
        if pre {
            normBackward(
                W, nm.ln2, dx: dR, dout: dH, x: ws.resid1.pointer, mean: ws.mean2.pointer,
                rstd: ws.rstd2.pointer, n: n, d: w)
        } else {
            ws.dResid1.zero()
            normBackward(
                W, nm.ln1, dx: dR, dout: dH, x: ws.resid1.pointer, mean: ws.mean1.pointer,
                rstd: ws.rstd1.pointer, n: n, d: w)
        }
        // Attention branch: dR is now the gradient at r1 = x + out(attn(·)).
        ws.dAttn.zero()
        linearBackward(W, nm.o, dx: ws.dAttn.pointer, dout: dR, x: ws.attn.pointer, n: n, inF: w, outF: w)
        ws.dq.zero(); ws.dk.zero(); ws.dv.zero()
        SideAttention.backward(
            dq: ws.dq.pointer, dk: ws.dk.pointer, dv: ws.dv.pointer, dout: ws.dAttn.pointer,
            q: ws.q.pointer, k: ws.k.pointer, v: ws.v.pointer, probs: ws.probs.pointer,
            lengths: g.lengths, shape: g.shape)
        let attnIn = pre ? UnsafePointer(ws.normed1.pointer) : x
        let dIn = pre ? dH : dx
        if pre { ws.dNormed.zero() } else { dx.update(from: dR, count: n * w) }
        linearBackward(W, nm.q, dx: dIn, dout: ws.dq.pointer, x: attnIn, n: n, inF: w, outF: w)
        linearBackward(W, nm.k, dx: dIn, dout: ws.dk.pointer, x: attnIn, n: n, inF: w, outF: w)
        linearBackward(W, nm.v, dx: dIn, dout: ws.dv.pointer, x: attnIn, n: n, inF: w, outF: w)
        if pre {
            dx.update(from: dR, count: n * w)
            normBackward(W, nm.ln1, dx: dx, dout: dH, x: x, mean: ws.mean1.pointer, rstd: ws.rstd1.pointer, n: n, d: w)
        }
    }
}
