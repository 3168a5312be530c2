import CBLAS
import Foundation
import QSTFormat
import QSTNN

/// GPTQ's calibration interleaved with the quantization ("true sequential", as GPTQ's reference code and AutoGPTQ
/// run it): each linear's input Gram matrix is collected from the activations of the model whose earlier linears
/// are *already quantized*, so every linear compensates the error of everything before it, not only its own. In a
/// block: q/k/v are quantized on the block's normed input, o on the attention output computed with the quantized
/// q/k/v, gate/up on the post-attention input with the quantized o, down on the SwiGLU output of the quantized
/// gate/up; the quantized block's output feeds the next block.
///
/// The calibration tokens' residual stream stays in memory (`tokens × hidden` floats) and each block runs once over
/// all of them, stage by stage, with the quantized weights dequantized to F32: the forward costs what the plain
/// calibration forward costs, and only one block's Gram matrices are alive at a time. Windows of `ctx` tokens are
/// causal sequences of their own (positions from 0), as in `ImportanceMatrix.collect`.
public enum SequentialGPTQ {
    public struct Progress: Sendable { public var layer: Int; public var layers: Int }

    /// `quantize(name, weights, rows, cols, gram)` quantizes one linear (weights `[rows, cols]` row-major, gram
    /// `Σ xxᵀ` `[cols, cols]` over the calibration tokens) or returns nil to keep it as it is (then the forward
    /// goes on with its original weights). With `asymmetricDamp`, the weights handed over are GPTQ's asymmetric
    /// target (`NF4GPTQ.asymmetricTarget`, that ridge): the full-precision model runs beside the quantized one and
    /// each linear is fitted to reproduce, from the quantized model's inputs, the full-precision model's outputs.
    /// Returns the calibration: every linear's mean squared input per channel (from the Gram diagonals, as
    /// `ImportanceMatrix` measures it) and the quantized tensors in `quantized`.
    public static func run(
        model: FrozenModel, tokens: [Int32], ctx: Int, textSHA256: String, asymmetricDamp: Double? = nil,
        quantize: (String, UnsafeBufferPointer<Float>, Int, Int, [Float]) throws -> NF4Tensor?,
        progress: (Progress) -> Void = { _ in }
    ) throws -> NF4Calibration {
        let c = model.config
        guard !c.isOPT else {
            throw QSTError.file(
                model.source.origin,
                "calibration reads LLaMA-layout blocks; model_type '\(c.modelType)' is not supported")
        }
        guard ctx >= 1 else { throw QSTError("calibration: window length \(ctx) must be at least 1") }
        guard !tokens.isEmpty else { throw QSTError("calibration: the text has no tokens") }
        if let window = c.attentionWindow, window < ctx {
            throw QSTError.file(
                model.source.origin,
                "sequential GPTQ attends whole windows; the sliding window \(window) is shorter than --calibrate-ctx \(ctx)"
            )
        }
        for (i, id) in tokens.enumerated() where id < 0 || Int(id) >= model.vocabSize {
            throw QSTError("calibration: token id \(id) at position \(i) is outside the vocabulary")
        }
        let start = Date()
        let s = model.blockShape, n = tokens.count, d = s.hidden
        let asymmetric = asymmetricDamp != nil
        // The quantized model's stream and, when asymmetric, the full-precision one's (q/k/v/up scratch shared).
        let quant = Stream(shape: s, rows: n), full = asymmetric ? Stream(shape: s, rows: n) : nil
        let q = FloatBuffer(count: n * s.qDim), k = FloatBuffer(count: n * s.kvDim), v = FloatBuffer(count: n * s.kvDim)
        let up = FloatBuffer(count: n * s.intermediate)
        for (r, id) in tokens.enumerated() {
            model.embedding.decode(start: Int(id) * d, count: d, into: quant.x.pointer + r * d)
        }
        if let full { full.x.pointer.update(from: quant.x.pointer, count: n * d) }
        // Each window restarts at position 0.
        let half = s.headDim / 2
        let cos = FloatBuffer(count: n * half), sin = FloatBuffer(count: n * half)
        let positions = (0..<n).map { Int32($0 % ctx) }
        positions.withUnsafeBufferPointer {
            RoPE.cosSin(cos: cos.pointer, sin: sin.pointer, positions: $0.baseAddress!, n: n, invFreq: model.invFreq)
        }
        let ones = [UInt8](repeating: 1, count: min(n, ctx))

        var channels: [String: [Float]] = [:]
        var quantized: [String: NF4Tensor] = [:]
        /// Quantizes the linears named `parts` (one shared input `[n, cols]`, `fullInput` the full-precision
        /// model's); returns the (original, quantized) weights to run. With `fullOutput` (one part only), the
        /// full-precision model's output of the part `[n, rows]` is written there, and the asymmetric target is
        /// formed from it (`X_qᵀ y_f`, cheaper than `C` when the part has fewer rows than inputs: down).
        func stage(
            _ layer: Int, _ parts: [String], input: UnsafePointer<Float>, fullInput: UnsafePointer<Float>?, cols: Int,
            fullOutput: UnsafeMutablePointer<Float>? = nil
        ) throws -> [(original: [Float], quantized: [Float])] {
            let gram = Self.gram(input, rows: n, cols: cols)
            let cross = fullInput != nil && fullOutput == nil ? Self.cross(input, fullInput!, rows: n, cols: cols) : nil
            let meanSquares = (0..<cols).map { gram[$0 * cols + $0] / Float(n) }
            return try parts.map { part in
                let name = "model.layers.\(layer).\(part).weight"
                let t = try model.source.tensor(name)
                guard t.shape.count == 2, t.shape[1] == cols else {
                    throw QSTError.tensor(model.source.origin, name, "shape \(t.shape) does not read \(cols) inputs")
                }
                var w = [Float](repeating: 0, count: t.count)
                w.withUnsafeMutableBufferPointer { t.decode(start: 0, count: t.count, into: $0.baseAddress!) }
                channels[name] = meanSquares
                var target = w
                if let fullInput, let damp = asymmetricDamp {
                    let rows = t.shape[0]
                    var projected = [Float](repeating: 0, count: rows * cols)
                    if let cross {
                        // projected = W · Cᵀ
                        cblas_sgemm(
                            CblasRowMajor, CblasNoTrans, CblasTrans, Int32(rows), Int32(cols), Int32(cols), 1, w,
                            Int32(cols), cross, Int32(cols), 0, &projected, Int32(cols))
                    } else if let y = fullOutput {
                        linear(y, fullInput, rows: n, w, outFeatures: rows, inFeatures: cols)
                        // projected = y_fᵀ · X_q
                        cblas_sgemm(
                            CblasRowMajor, CblasTrans, CblasNoTrans, Int32(rows), Int32(cols), Int32(n), 1, y,
                            Int32(rows), input, Int32(cols), 0, &projected, Int32(cols))
                    }
                    target = try w.withUnsafeBufferPointer {
                        try NF4GPTQ.asymmetricTarget(
                            $0, rows: rows, cols: cols, gram: gram, projected: projected, damp: damp,
                            file: model.source.origin, tensor: name)
                    }
                }
                guard
                    let nf4 = try target.withUnsafeBufferPointer({ try quantize(name, $0, t.shape[0], cols, gram) })
                else { return (w, w) }
                quantized[name] = nf4
                return (w, NF4.dequantize(nf4))
            }
        }
        /// Attention of one stream with the given q/k/v weights, into `st.attn`.
        func attention(_ st: Stream, _ wq: [Float], _ wk: [Float], _ wv: [Float]) {
            linear(q.pointer, st.h.constPointer, rows: n, wq, outFeatures: s.qDim, inFeatures: d)
            linear(k.pointer, st.h.constPointer, rows: n, wk, outFeatures: s.kvDim, inFeatures: d)
            linear(v.pointer, st.h.constPointer, rows: n, wv, outFeatures: s.kvDim, inFeatures: d)
            RoPE.forward(
                x: q.pointer, cos: cos.constPointer, sin: sin.constPointer, n: n, nHeads: s.heads, headDim: s.headDim)
            RoPE.forward(
                x: k.pointer, cos: cos.constPointer, sin: sin.constPointer, n: n, nHeads: s.kvHeads, headDim: s.headDim)
            let blas = BLASThreadScope()
            defer { blas.restore() }
            ones.withUnsafeBufferPointer { mask in
                for w0 in stride(from: 0, to: n, by: ctx) {
                    let rows = min(ctx, n - w0)
                    HeadParallelAttention.forward(
                        out: st.attn.pointer + w0 * s.qDim, q: q.constPointer + w0 * s.qDim,
                        kCache: k.constPointer + w0 * s.kvDim, vCache: v.constPointer + w0 * s.kvDim,
                        keyMask: mask.baseAddress!, batch: 1, newTokens: rows, pastLength: 0, capacity: rows,
                        nHeads: s.heads, nKVHeads: s.kvHeads, headDim: s.headDim, threads: model.context.threads)
                }
            }
        }
        func swiGLU(_ st: Stream, _ wg: [Float], _ wu: [Float]) {
            linear(st.gate.pointer, st.h.constPointer, rows: n, wg, outFeatures: s.intermediate, inFeatures: d)
            linear(up.pointer, st.h.constPointer, rows: n, wu, outFeatures: s.intermediate, inFeatures: d)
            SwiGLU.forward(
                out: st.gate.pointer, gate: st.gate.constPointer, up: up.constPointer, count: n * s.intermediate)
        }
        let streams = [quant] + (full.map { [$0] } ?? [])

        for layer in 0..<model.layerCount {
            let norms = try model.blockWeights(layer)
            // q, k, v on the normed input.
            for st in streams {
                RMSNorm.forward(
                    out: st.h.pointer, rstd: nil, x: st.x.constPointer, weight: norms.inputNorm, n: n, d: d, eps: s.eps)
            }
            let qkv = try stage(
                layer, ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"], input: quant.h.constPointer,
                fullInput: full?.h.constPointer, cols: d)
            // o on the attention output of the quantized q, k, v.
            if let full { attention(full, qkv[0].original, qkv[1].original, qkv[2].original) }
            attention(quant, qkv[0].quantized, qkv[1].quantized, qkv[2].quantized)
            let o = try stage(
                layer, ["self_attn.o_proj"], input: quant.attn.constPointer, fullInput: full?.attn.constPointer,
                cols: s.qDim)
            for (st, w) in zip(streams, [o[0].quantized, o[0].original]) {
                linear(
                    st.x.pointer, st.attn.constPointer, rows: n, w, outFeatures: d, inFeatures: s.qDim, accumulate: true
                )
                // gate, up on the post-attention input.
                RMSNorm.forward(
                    out: st.h.pointer, rstd: nil, x: st.x.constPointer, weight: norms.postAttentionNorm, n: n, d: d,
                    eps: s.eps)
            }
            let gu = try stage(
                layer, ["mlp.gate_proj", "mlp.up_proj"], input: quant.h.constPointer, fullInput: full?.h.constPointer,
                cols: d)
            if let full { swiGLU(full, gu[0].original, gu[1].original) }
            swiGLU(quant, gu[0].quantized, gu[1].quantized)
            // down on the SwiGLU output of the quantized gate, up.
            // (The full-precision stream's down output is formed in the stage, into its free `h`.)
            let down = try stage(
                layer, ["mlp.down_proj"], input: quant.gate.constPointer, fullInput: full?.gate.constPointer,
                cols: s.intermediate, fullOutput: full?.h.pointer)
            linear(
                quant.x.pointer, quant.gate.constPointer, rows: n, down[0].quantized, outFeatures: d,
                inFeatures: s.intermediate, accumulate: true)
            if let full { cblas_saxpy(Int32(n * d), 1, full.h.constPointer, 1, full.x.pointer, 1) }
            progress(Progress(layer: layer + 1, layers: model.layerCount))
        }
        var calibration = NF4Calibration(
            channels: channels, textSHA256: textSHA256, tokens: n, ctx: ctx,
            seconds: Date().timeIntervalSince(start))
        calibration.quantized = quantized
        return calibration
    }

    /// One model's activations over all calibration tokens: residual stream, normed input, attention output, MLP.
    final class Stream {
        let x: FloatBuffer, h: FloatBuffer, attn: FloatBuffer, gate: FloatBuffer
        init(shape s: DecoderBlockShape, rows n: Int) {
            x = FloatBuffer(count: n * s.hidden); h = FloatBuffer(count: n * s.hidden)
            attn = FloatBuffer(count: n * s.qDim); gate = FloatBuffer(count: n * s.intermediate)
        }
    }

    /// `X_qᵀ X_f` `[cols, cols]` row-major (`[i, j] = Σₜ q[t, i] · f[t, j]`).
    static func cross(_ xq: UnsafePointer<Float>, _ xf: UnsafePointer<Float>, rows: Int, cols: Int) -> [Float] {
        var g = [Float](repeating: 0, count: cols * cols)
        g.withUnsafeMutableBufferPointer {
            cblas_sgemm(
                CblasRowMajor, CblasTrans, CblasNoTrans, Int32(cols), Int32(cols), Int32(rows), 1, xq, Int32(cols), xf,
                Int32(cols), 0, $0.baseAddress!, Int32(cols))
        }
        return g
    }

    /// `out [rows, outFeatures] (+)= x [rows, inFeatures] · wᵀ` (`Linear.forward`: BLAS on every core).
    static func linear(
        _ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, rows: Int, _ w: [Float], outFeatures: Int,
        inFeatures: Int, accumulate: Bool = false
    ) {
        w.withUnsafeBufferPointer {
            Linear.forward(
                out: out, x: x, weight: $0.baseAddress!, bias: nil, n: rows, inFeatures: inFeatures,
                outFeatures: outFeatures, accumulate: accumulate)
        }
    }

    /// `Σ xxᵀ` over the rows of `x [rows, cols]`, symmetric `[cols, cols]` row-major.
    static func gram(_ x: UnsafePointer<Float>, rows: Int, cols: Int) -> [Float] {
        var g = [Float](repeating: 0, count: cols * cols)
        g.withUnsafeMutableBufferPointer {
            cblas_ssyrk(
                CblasRowMajor, CblasUpper, CblasTrans, Int32(cols), Int32(rows), 1, x, Int32(cols), 0,
                $0.baseAddress!, Int32(cols))
        }
        for i in 0..<cols { for j in 0..<i { g[i * cols + j] = g[j * cols + i] } }
        return g
    }
}
