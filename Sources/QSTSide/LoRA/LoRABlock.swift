import Foundation
import QSTEngine
import QSTNN

/// A base decoder block's frozen weights in the form LoRA training needs (forward and data-gradient views).
struct LoRAFrozenBlock {
    let inputNorm: UnsafePointer<Float>, postNorm: UnsafePointer<Float>
    let linears: [LoRATarget: FrozenMatrix]
    /// Keeps the norm vectors and mappings alive.
    let weights: DecoderBlockWeights

    init(_ w: DecoderBlockWeights, origin: String) throws {
        weights = w
        inputNorm = w.inputNorm; postNorm = w.postAttentionNorm
        linears = [
            .q: try FrozenMatrix(w.q, origin: origin), .k: try FrozenMatrix(w.k, origin: origin),
            .v: try FrozenMatrix(w.v, origin: origin), .o: try FrozenMatrix(w.o, origin: origin),
            .gate: try FrozenMatrix(w.gate, origin: origin), .up: try FrozenMatrix(w.up, origin: origin),
            .down: try FrozenMatrix(w.down, origin: origin),
        ]
    }

    func linear(_ t: LoRATarget) -> FrozenMatrix { linears[t]! }
}

/// RoPE tables, key mask and attention shape of one batch of right-padded sequences (positions 0… each).
struct LoRAGeometry {
    let batch: Int, seqLen: Int
    var rows: Int { batch * seqLen }
    let cos: FloatBuffer, sin: FloatBuffer
    let keyMask: Buffer<UInt8>
    let shape: Attention.Shape

    init(lengths: [Int], seqLen: Int, block s: DecoderBlockShape, invFreq: [Float]) {
        batch = lengths.count; self.seqLen = seqLen
        let n = lengths.count * seqLen, half = s.headDim / 2
        var positions = [Int32](repeating: 0, count: n)
        for b in 0..<lengths.count { for t in 0..<seqLen { positions[b * seqLen + t] = Int32(t) } }
        let c = FloatBuffer(count: n * half), si = FloatBuffer(count: n * half)
        positions.withUnsafeBufferPointer {
            RoPE.cosSin(cos: c.pointer, sin: si.pointer, positions: $0.baseAddress!, n: n, invFreq: invFreq)
        }
        cos = c; sin = si
        keyMask = Buffer<UInt8>(Attention.maskFromLengths(lengths, seqLen: seqLen))
        shape = Attention.Shape(
            batch: lengths.count, seqLen: seqLen, nHeads: s.heads, nKVHeads: s.kvHeads, headDim: s.headDim)
    }
}

/// What one block's forward keeps for backward: every intermediate of the full-width block, the LoRA
/// products `u = dropout(x)·Aᵀ` and the dropout stream start of each projection.
final class LoRABlockTape {
    let rows: Int, probsCount: Int
    let normed1, rstd1, q, k, v, attn, resid1, normed2, rstd2, gate, up, act, probs: FloatBuffer
    var u: [LoRATarget: FloatBuffer] = [:]
    var rngStarts: [LoRATarget: LoRABranch.DropoutDraw] = [:]

    init(rows n: Int, shape s: DecoderBlockShape, probsCount: Int, lora: LoRAConfig) {
        rows = n; self.probsCount = probsCount
        let d = s.hidden, f = s.intermediate
        normed1 = FloatBuffer(count: n * d); rstd1 = FloatBuffer(count: n)
        q = FloatBuffer(count: n * s.qDim); k = FloatBuffer(count: n * s.kvDim); v = FloatBuffer(count: n * s.kvDim)
        attn = FloatBuffer(count: n * s.qDim); resid1 = FloatBuffer(count: n * d)
        normed2 = FloatBuffer(count: n * d); rstd2 = FloatBuffer(count: n)
        gate = FloatBuffer(count: n * f); up = FloatBuffer(count: n * f); act = FloatBuffer(count: n * f)
        probs = FloatBuffer(count: probsCount)
        for t in lora.targets { u[t] = FloatBuffer(count: n * lora.r) }
    }

    /// Bytes of one tape for `n` rows (for memory reports).
    static func bytes(rows n: Int, shape s: DecoderBlockShape, probsCount: Int, lora: LoRAConfig) -> Int {
        4
            * (n * (4 * s.hidden + 2 * s.qDim + 2 * s.kvDim + 3 * s.intermediate + 2) + probsCount
                + lora.targets.count * n * lora.r)
    }
}

/// Gradient scratch shared by all layers' backward passes.
final class LoRABlockGradScratch {
    let rows: Int
    let dResid1, dAttn, dq, dk, dv, dNormed, dAct, dGate, dUp, tile: FloatBuffer
    let branch: LoRABranch.Scratch

    init(rows n: Int, shape s: DecoderBlockShape, r: Int, tileElements: Int = 1 << 18) {
        rows = n
        let d = s.hidden, f = s.intermediate
        dResid1 = FloatBuffer(count: n * d); dAttn = FloatBuffer(count: n * s.qDim)
        dq = FloatBuffer(count: n * s.qDim); dk = FloatBuffer(count: n * s.kvDim); dv = FloatBuffer(count: n * s.kvDim)
        dNormed = FloatBuffer(count: n * d); dAct = FloatBuffer(count: n * f)
        dGate = FloatBuffer(count: n * f); dUp = FloatBuffer(count: n * f)
        tile = FloatBuffer(count: max(tileElements, max(d, f, s.qDim)))
        branch = LoRABranch.Scratch(rows: n, maxIn: max(d, f, s.qDim), r: r)
    }
}

/// One base decoder block with LoRA on its projections, forward (keeping a tape) and backward
/// (data gradients through the frozen weights, LoRA gradients into `LoRAWeights.grads`). The block is
/// the engine's `DecoderBlock` (RMSNorm → GQA attention with RoPE → residual → RMSNorm → SwiGLU → residual).
enum LoRABlock {
    /// `out = block(x)`; `rng` nil = no dropout. Advances `rng` by the dropout draws of every projection,
    /// unless per-example `streams` are given (then each projection is its own dropout call).
    static func forward(
        layer i: Int, frozen F: LoRAFrozenBlock, lora W: LoRAWeights, shape s: DecoderBlockShape,
        x: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, geometry g: LoRAGeometry,
        tape T: LoRABlockTape, scratch: LoRABranch.Scratch, rng: inout SplitMix64?,
        context: MatmulContext, streams: DropoutStreams? = nil
    ) {
        let n = g.rows, d = s.hidden
        func project(_ t: LoRATarget, _ input: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, accumulate: Bool)
        {
            F.linear(t).forward(out: y, x: input, n: n, accumulate: accumulate, context: context)
            guard let pair = W.pair(layer: i, t), let u = T.u[t] else { return }
            var start: LoRABranch.DropoutDraw?
            if rng != nil, W.config.dropout > 0, let streams {
                start = .examples(
                    streams.forCall(i * LoRATarget.allCases.count + (LoRATarget.allCases.firstIndex(of: t) ?? 0)))
            } else if var r = rng, W.config.dropout > 0 {
                start = .stream(r.state)
                r.advance(by: n * pair.inF)
                rng = r
            }
            T.rngStarts[t] = start
            LoRABranch.forward(
                out: y, x: input, n: n, pair: pair, weights: W, draw: start, u: u.pointer,
                scratch: scratch)
        }
        RMSNorm.forward(
            out: T.normed1.pointer, rstd: T.rstd1.pointer, x: x, weight: F.inputNorm, n: n, d: d, eps: s.eps)
        project(.q, T.normed1.constPointer, T.q.pointer, accumulate: false)
        project(.k, T.normed1.constPointer, T.k.pointer, accumulate: false)
        project(.v, T.normed1.constPointer, T.v.pointer, accumulate: false)
        RoPE.forward(x: T.q.pointer, cos: g.cos.pointer, sin: g.sin.pointer, n: n, nHeads: s.heads, headDim: s.headDim)
        RoPE.forward(
            x: T.k.pointer, cos: g.cos.pointer, sin: g.sin.pointer, n: n, nHeads: s.kvHeads, headDim: s.headDim)
        Attention.forward(
            out: T.attn.pointer, probs: T.probs.pointer, q: T.q.pointer, k: T.k.pointer, v: T.v.pointer,
            keyMask: g.keyMask.constPointer, shape: g.shape)
        T.resid1.pointer.update(from: x, count: n * d)
        project(.o, T.attn.constPointer, T.resid1.pointer, accumulate: true)
        RMSNorm.forward(
            out: T.normed2.pointer, rstd: T.rstd2.pointer, x: T.resid1.pointer, weight: F.postNorm,
            n: n, d: d, eps: s.eps)
        project(.gate, T.normed2.constPointer, T.gate.pointer, accumulate: false)
        project(.up, T.normed2.constPointer, T.up.pointer, accumulate: false)
        // The engine's block always uses SiLU here (LLaMA / Qwen2 MLPs).
        SwiGLU.forward(out: T.act.pointer, gate: T.gate.pointer, up: T.up.pointer, count: n * s.intermediate)
        out.update(from: T.resid1.pointer, count: n * d)
        project(.down, T.act.constPointer, out, accumulate: true)
    }

    /// Writes `dx` (overwriting) from `dout` and the tape `forward(x)` left; accumulates LoRA gradients.
    static func backward(
        layer i: Int, frozen F: LoRAFrozenBlock, lora W: LoRAWeights, shape s: DecoderBlockShape,
        x: UnsafePointer<Float>, dout: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>,
        geometry g: LoRAGeometry, tape T: LoRABlockTape, grad G: LoRABlockGradScratch
    ) {
        let n = g.rows, d = s.hidden, f = s.intermediate
        /// `dIn += dy · (W + s·B·A)ᵀ`-style data gradient of projection `t`, plus its LoRA weight gradients.
        func projectBack(
            _ t: LoRATarget, input: UnsafePointer<Float>, dy: UnsafePointer<Float>,
            dIn: UnsafeMutablePointer<Float>
        ) {
            F.linear(t).backwardData(dx: dIn, dy: dy, n: n, tile: G.tile)
            guard let pair = W.pair(layer: i, t), let u = T.u[t] else { return }
            LoRABranch.backward(
                dx: dIn, dy: dy, x: input, n: n, pair: pair, weights: W, draw: T.rngStarts[t],
                u: u.constPointer, scratch: G.branch)
        }
        // MLP branch.
        G.dResid1.pointer.update(from: dout, count: n * d)
        G.dAct.zero()
        projectBack(.down, input: T.act.constPointer, dy: dout, dIn: G.dAct.pointer)
        G.dGate.zero(); G.dUp.zero()
        SwiGLU.backward(
            dgate: G.dGate.pointer, dup: G.dUp.pointer, dout: G.dAct.pointer, gate: T.gate.pointer,
            up: T.up.pointer, count: n * f)
        G.dNormed.zero()
        projectBack(.gate, input: T.normed2.constPointer, dy: G.dGate.constPointer, dIn: G.dNormed.pointer)
        projectBack(.up, input: T.normed2.constPointer, dy: G.dUp.constPointer, dIn: G.dNormed.pointer)
        RMSNorm.backward(
            dx: G.dResid1.pointer, dweight: nil, dout: G.dNormed.pointer, x: T.resid1.pointer,
            weight: F.postNorm, rstd: T.rstd2.pointer, n: n, d: d)
        // Attention branch.
        G.dAttn.zero()
        projectBack(.o, input: T.attn.constPointer, dy: G.dResid1.constPointer, dIn: G.dAttn.pointer)
        G.dq.zero(); G.dk.zero(); G.dv.zero()
        Attention.backward(
            dq: G.dq.pointer, dk: G.dk.pointer, dv: G.dv.pointer, dout: G.dAttn.pointer,
            q: T.q.pointer, k: T.k.pointer, v: T.v.pointer, probs: T.probs.pointer, shape: g.shape)
        RoPE.backward(
            dx: G.dq.pointer, cos: g.cos.pointer, sin: g.sin.pointer, n: n, nHeads: s.heads, headDim: s.headDim)
        RoPE.backward(
            dx: G.dk.pointer, cos: g.cos.pointer, sin: g.sin.pointer, n: n, nHeads: s.kvHeads, headDim: s.headDim)
        G.dNormed.zero()
        projectBack(.q, input: T.normed1.constPointer, dy: G.dq.constPointer, dIn: G.dNormed.pointer)
        projectBack(.k, input: T.normed1.constPointer, dy: G.dk.constPointer, dIn: G.dNormed.pointer)
        projectBack(.v, input: T.normed1.constPointer, dy: G.dv.constPointer, dIn: G.dNormed.pointer)
        dx.update(from: G.dResid1.pointer, count: n * d)
        RMSNorm.backward(
            dx: dx, dweight: nil, dout: G.dNormed.pointer, x: x, weight: F.inputNorm,
            rstd: T.rstd1.pointer, n: n, d: d)
    }
}
