import QSTNN

/// `norm_side`, the side stream's final norm before `upsample`: RMSNorm `model.norm_qst` (LLaMA family),
/// LayerNorm `model.decoder.final_layer_norm_qst` (pre-norm OPT) or nothing (post-norm OPT such as 350m,
/// whose reference has no final norm on either stream).
enum SideHeadNorm {
    /// `out [n, w] = norm(x)`; `mean` is only written by the LayerNorm.
    static func forward(
        weights W: SideWeights, out: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>,
        rstd: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, n: Int
    ) {
        let c = W.config, w = c.width
        guard let name = c.headNormName else { out.update(from: x, count: n * w); return }
        c.base.family.headNormForward(weights: W, name: name, out: out, mean: mean, rstd: rstd, x: x, n: n)
    }

    /// Accumulates `dx` and the norm's weight gradients from `dout`.
    static func backward(
        weights W: SideWeights, dx: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
        x: UnsafePointer<Float>, mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, n: Int
    ) {
        let c = W.config, w = c.width
        guard let name = c.headNormName else {
            for j in 0..<(n * w) { dx[j] += dout[j] }
            return
        }
        c.base.family.headNormBackward(weights: W, name: name, dx: dx, dout: dout, x: x, mean: mean, rstd: rstd, n: n)
    }
}
