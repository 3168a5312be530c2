import Foundation
import QSTNN

/// Per-batch inputs shared by every side block: RoPE tables, the padding mask and the attention shape.
struct SideBatchGeometry {
    let batch: Int, seqLen: Int
    var rows: Int { batch * seqLen }
    let cos: FloatBuffer, sin: FloatBuffer
    let lengths: [Int]
    let shape: Attention.Shape

    init(config c: SideConfig, lengths: [Int], seqLen: Int, invFreq: [Float]) {
        batch = lengths.count
        self.lengths = lengths
        self.seqLen = seqLen
        let n = lengths.count * seqLen
        var positions = [Int32](repeating: 0, count: n)
        for b in 0..<lengths.count { for t in 0..<seqLen { positions[b * seqLen + t] = Int32(t) } }
        let half = c.headDim / 2
        let cosTable = FloatBuffer(count: n * half), sinTable = FloatBuffer(count: n * half)
        positions.withUnsafeBufferPointer { p in
            RoPE.cosSin(cos: cosTable.pointer, sin: sinTable.pointer, positions: p.baseAddress!, n: n, invFreq: invFreq)
        }
        cos = cosTable
        sin = sinTable
        shape = Attention.Shape(
            batch: lengths.count, seqLen: seqLen, nHeads: c.heads, nKVHeads: c.kvHeads,
            headDim: c.headDim)
    }
}

/// Activations of one side block forward, reused layer after layer: backward recomputes a block's forward
/// from its saved input rather than keeping B·heads·T² attention probabilities for every layer.
final class SideBlockWorkspace {
    /// Rows the buffers hold (at least the batch's).
    let rows: Int
    let normed1, rstd1, q, k, v, attn, resid1, normed2, rstd2, gate, up, act: FloatBuffer
    /// OPT blocks' LayerNorm means and post-norm second residual sum.
    let mean1, mean2, resid2: FloatBuffer
    let probs: FloatBuffer
    // Gradient scratch.
    let dResid1, dAttn, dq, dk, dv, dNormed, dAct, dGate, dUp: FloatBuffer

    init(config c: SideConfig, geometry g: SideBatchGeometry) {
        let plan = Plan(config: c, batch: g.batch, seqLen: g.seqLen)
        func buffer(_ slot: Slot) -> FloatBuffer { FloatBuffer(count: plan.count(slot)) }
        rows = g.rows
        normed1 = buffer(.normed1); rstd1 = buffer(.rstd1)
        q = buffer(.q); k = buffer(.k); v = buffer(.v)
        attn = buffer(.attn); resid1 = buffer(.resid1)
        normed2 = buffer(.normed2); rstd2 = buffer(.rstd2)
        gate = buffer(.gate); up = buffer(.up); act = buffer(.act)
        mean1 = buffer(.mean1); mean2 = buffer(.mean2); resid2 = buffer(.resid2)
        probs = buffer(.probs)
        dResid1 = buffer(.dResid1); dAttn = buffer(.dAttn)
        dq = buffer(.dq); dk = buffer(.dk); dv = buffer(.dv)
        dNormed = buffer(.dNormed); dAct = buffer(.dAct)
        dGate = buffer(.dGate); dUp = buffer(.dUp)
    }

    /// Bytes for a batch of `batch` sequences of `seqLen` tokens: what `init` allocates.
    static func bytes(config c: SideConfig, batch: Int, seqLen: Int) -> Int {
        let plan = Plan(config: c, batch: batch, seqLen: seqLen)
        return MemoryLayout<Float>.stride * Slot.allCases.reduce(0) { $0 + plan.count($1) }
    }

    /// The workspace's buffers, one case each.
    enum Slot: CaseIterable {
        case normed1, rstd1, q, k, v, attn, resid1, normed2, rstd2, gate, up, act, mean1, mean2, resid2, probs
        case dResid1, dAttn, dq, dk, dv, dNormed, dAct, dGate, dUp
    }

    /// The one size table (as llm.c keeps one): the allocation in `init` and the byte count in `bytes`
    /// (SideMemory's estimate) both read it, so they cannot disagree.
    struct Plan {
        let rows: Int, width: Int, queryWidth: Int, keyWidth: Int, ffn: Int, probs: Int, secondResidual: Bool

        init(config c: SideConfig, batch: Int, seqLen: Int) {
            rows = batch * seqLen; width = c.width; queryWidth = c.heads * c.headDim
            keyWidth = c.kvHeads * c.headDim; ffn = c.intermediate
            probs =
                Attention.Shape(
                    batch: batch, seqLen: seqLen, nHeads: c.heads, nKVHeads: c.kvHeads,
                    headDim: c.headDim
                ).probsCount
            secondResidual = c.base.family.blockKeepsSecondResidual
        }

        /// Elements of one buffer.
        func count(_ slot: Slot) -> Int {
            switch slot {
            case .normed1, .resid1, .normed2, .dResid1, .dNormed: return rows * width
            case .rstd1, .rstd2, .mean1, .mean2: return rows
            case .q, .attn, .dAttn, .dq: return rows * queryWidth
            case .k, .v, .dk, .dv: return rows * keyWidth
            case .gate, .up, .act, .dAct, .dGate, .dUp: return rows * ffn
            case .resid2: return secondResidual ? rows * width : 0
            case .probs: return probs
            }
        }
    }
}

/// One side block: a LLaMA decoder layer at width d/r (RMSNorm → GQA attention with RoPE → residual →
/// RMSNorm → gated MLP → residual), with the reference's tensor names `model.qst_layers.{i}.…`.
enum SideBlock {
    struct Names {
        let inNorm, q, k, v, o, postNorm, gate, up, down: String
        init(_ i: Int) {
            let p = "model.qst_layers.\(i)."
            inNorm = p + "input_layernorm.weight"; postNorm = p + "post_attention_layernorm.weight"
            q = p + "self_attn.q_proj.weight"; k = p + "self_attn.k_proj.weight"
            v = p + "self_attn.v_proj.weight"; o = p + "self_attn.o_proj.weight"
            gate = p + "mlp.gate_proj.weight"; up = p + "mlp.up_proj.weight"; down = p + "mlp.down_proj.weight"
        }
    }

    /// The blocks, `model.norm_qst`, `upsample` and `lm_head_z` in the reference's state-dict order (after the
    /// downsamplers and gates).
    static func layout(config c: SideConfig, add: SideLayoutAdd) {
        let d = c.base.hiddenSize, w = c.width, hd = c.headDim, q = c.heads * hd, kv = c.kvHeads * hd
        let f = c.intermediate
        for i in 0..<c.base.layerCount {
            let p = "model.qst_layers.\(i)."
            add(p + "input_layernorm.weight", [w], .ones, 0, 0, false)
            add(p + "self_attn.q_proj.weight", [q, w], .uniformFanIn, w, 0, true)
            add(p + "self_attn.k_proj.weight", [kv, w], .uniformFanIn, w, 0, true)
            add(p + "self_attn.v_proj.weight", [kv, w], .uniformFanIn, w, 0, true)
            add(p + "self_attn.o_proj.weight", [w, q], .uniformFanIn, q, 0, true)
            add(p + "post_attention_layernorm.weight", [w], .ones, 0, 0, false)
            add(p + "mlp.gate_proj.weight", [f, w], .uniformFanIn, w, 0, true)
            add(p + "mlp.up_proj.weight", [f, w], .uniformFanIn, w, 0, true)
            add(p + "mlp.down_proj.weight", [w, f], .uniformFanIn, f, 0, true)
        }
        add("model.norm_qst.weight", [w], .ones, 0, 0, false)
        let up = c.upsampleInit
        add("upsample.weight", [d, w], up, w, 0, true)
        add("upsample.bias", [d], up, w, 0, false)
        add("lm_head_z", [d], .constant, 0, c.headGateInit, false)
    }

    /// `out = block_i(x)`, leaving every intermediate in `ws`. `out` must not alias `x`.
    static func forward(
        layer i: Int, weights W: SideWeights, x: UnsafePointer<Float>,
        out: UnsafeMutablePointer<Float>, geometry g: SideBatchGeometry, ws: SideBlockWorkspace
    ) {
        let c = W.config, nm = Names(i), n = g.rows, w = c.width, hd = c.headDim
        let qw = c.heads * hd, kw = c.kvHeads * hd, f = c.intermediate, eps = Float(c.base.rmsNormEps)
        RMSNorm.forward(
            out: ws.normed1.pointer, rstd: ws.rstd1.pointer, x: x, weight: W.value(nm.inNorm),
            n: n, d: w, eps: eps)
        Linear.forward(
            out: ws.q.pointer, x: ws.normed1.pointer, weight: W.value(nm.q), bias: nil,
            n: n, inFeatures: w, outFeatures: qw)
        Linear.forward(
            out: ws.k.pointer, x: ws.normed1.pointer, weight: W.value(nm.k), bias: nil,
            n: n, inFeatures: w, outFeatures: kw)
        Linear.forward(
            out: ws.v.pointer, x: ws.normed1.pointer, weight: W.value(nm.v), bias: nil,
            n: n, inFeatures: w, outFeatures: kw)
        RoPE.forward(x: ws.q.pointer, cos: g.cos.pointer, sin: g.sin.pointer, n: n, nHeads: c.heads, headDim: hd)
        RoPE.forward(x: ws.k.pointer, cos: g.cos.pointer, sin: g.sin.pointer, n: n, nHeads: c.kvHeads, headDim: hd)
        SideAttention.forward(
            out: ws.attn.pointer, probs: ws.probs.pointer, q: ws.q.pointer, k: ws.k.pointer,
            v: ws.v.pointer, lengths: g.lengths, shape: g.shape)
        ws.resid1.pointer.update(from: x, count: n * w)
        Linear.forward(
            out: ws.resid1.pointer, x: ws.attn.pointer, weight: W.value(nm.o), bias: nil,
            n: n, inFeatures: qw, outFeatures: w, accumulate: true)
        RMSNorm.forward(
            out: ws.normed2.pointer, rstd: ws.rstd2.pointer, x: ws.resid1.pointer,
            weight: W.value(nm.postNorm), n: n, d: w, eps: eps)
        Linear.forward(
            out: ws.gate.pointer, x: ws.normed2.pointer, weight: W.value(nm.gate), bias: nil,
            n: n, inFeatures: w, outFeatures: f)
        Linear.forward(
            out: ws.up.pointer, x: ws.normed2.pointer, weight: W.value(nm.up), bias: nil,
            n: n, inFeatures: w, outFeatures: f)
        SwiGLU.forward(
            out: ws.act.pointer, gate: ws.gate.pointer, up: ws.up.pointer, count: n * f,
            activation: c.blockActivation)
        out.update(from: ws.resid1.pointer, count: n * w)
        Linear.forward(
            out: out, x: ws.act.pointer, weight: W.value(nm.down), bias: nil,
            n: n, inFeatures: f, outFeatures: w, accumulate: true)
    }

    /// Given `dout` and the intermediates `forward(x)` left in `ws`, writes `dx` (overwriting) and
    /// accumulates the block's weight gradients.
    static func backward(
        layer i: Int, weights W: SideWeights, x: UnsafePointer<Float>, dout: UnsafePointer<Float>,
        dx: UnsafeMutablePointer<Float>, geometry g: SideBatchGeometry, ws: SideBlockWorkspace
    ) {
        let c = W.config, nm = Names(i), n = g.rows, w = c.width, hd = c.headDim
        let qw = c.heads * hd, kw = c.kvHeads * hd, f = c.intermediate
        // MLP branch.
        ws.dResid1.pointer.update(from: dout, count: n * w)
        ws.dAct.zero()
        Linear.backward(
            dx: ws.dAct.pointer, dweight: W.grad(nm.down), dbias: nil, dout: dout, x: ws.act.pointer,
            weight: W.value(nm.down), n: n, inFeatures: f, outFeatures: w)
        ws.dGate.zero(); ws.dUp.zero()
        SwiGLU.backward(
            dgate: ws.dGate.pointer, dup: ws.dUp.pointer, dout: ws.dAct.pointer, gate: ws.gate.pointer,
            up: ws.up.pointer, count: n * f, activation: c.blockActivation)
        ws.dNormed.zero()
        Linear.backward(
            dx: ws.dNormed.pointer, dweight: W.grad(nm.gate), dbias: nil, dout: ws.dGate.pointer,
            x: ws.normed2.pointer, weight: W.value(nm.gate), n: n, inFeatures: w, outFeatures: f)
        Linear.backward(
            dx: ws.dNormed.pointer, dweight: W.grad(nm.up), dbias: nil, dout: ws.dUp.pointer,
            x: ws.normed2.pointer, weight: W.value(nm.up), n: n, inFeatures: w, outFeatures: f)
        RMSNorm.backward(
            dx: ws.dResid1.pointer, dweight: W.grad(nm.postNorm), dout: ws.dNormed.pointer,
            x: ws.resid1.pointer, weight: W.value(nm.postNorm), rstd: ws.rstd2.pointer, n: n, d: w)
        // Attention branch.
        ws.dAttn.zero()
        Linear.backward(
            dx: ws.dAttn.pointer, dweight: W.grad(nm.o), dbias: nil, dout: ws.dResid1.pointer,
            x: ws.attn.pointer, weight: W.value(nm.o), n: n, inFeatures: qw, outFeatures: w)
        ws.dq.zero(); ws.dk.zero(); ws.dv.zero()
        SideAttention.backward(
            dq: ws.dq.pointer, dk: ws.dk.pointer, dv: ws.dv.pointer, dout: ws.dAttn.pointer,
            q: ws.q.pointer, k: ws.k.pointer, v: ws.v.pointer, probs: ws.probs.pointer,
            lengths: g.lengths, shape: g.shape)
        RoPE.backward(dx: ws.dq.pointer, cos: g.cos.pointer, sin: g.sin.pointer, n: n, nHeads: c.heads, headDim: hd)
        RoPE.backward(dx: ws.dk.pointer, cos: g.cos.pointer, sin: g.sin.pointer, n: n, nHeads: c.kvHeads, headDim: hd)
        ws.dNormed.zero()
        Linear.backward(
            dx: ws.dNormed.pointer, dweight: W.grad(nm.q), dbias: nil, dout: ws.dq.pointer,
            x: ws.normed1.pointer, weight: W.value(nm.q), n: n, inFeatures: w, outFeatures: qw)
        Linear.backward(
            dx: ws.dNormed.pointer, dweight: W.grad(nm.k), dbias: nil, dout: ws.dk.pointer,
            x: ws.normed1.pointer, weight: W.value(nm.k), n: n, inFeatures: w, outFeatures: kw)
        Linear.backward(
            dx: ws.dNormed.pointer, dweight: W.grad(nm.v), dbias: nil, dout: ws.dv.pointer,
            x: ws.normed1.pointer, weight: W.value(nm.v), n: n, inFeatures: w, outFeatures: kw)
        dx.update(from: ws.dResid1.pointer, count: n * w)
        RMSNorm.backward(
            dx: dx, dweight: W.grad(nm.inNorm), dout: ws.dNormed.pointer, x: x,
            weight: W.value(nm.inNorm), rstd: ws.rstd1.pointer, n: n, d: w)
    }
}
