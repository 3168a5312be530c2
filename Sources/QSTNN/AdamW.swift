import Foundation
import QSTCore

/// One trainable tensor: its values, its gradient, and whether weight decay applies (PyTorch users usually
/// exempt biases, norms and gates).
public struct Parameter: @unchecked Sendable {
    public let name: String
    public let value: UnsafeMutablePointer<Float>
    public let grad: UnsafeMutablePointer<Float>
    public let count: Int
    public let decay: Bool

    public init(
        name: String, value: UnsafeMutablePointer<Float>, grad: UnsafeMutablePointer<Float>, count: Int,
        decay: Bool = true
    ) {
        self.name = name; self.value = value; self.grad = grad; self.count = count; self.decay = decay
    }
}

/// PyTorch `torch.optim.AdamW` (decoupled weight decay, bias-corrected moments, no amsgrad):
/// `p ← p·(1 − lr·wd)`, `m ← β1·m + (1−β1)·g`, `v ← β2·v + (1−β2)·g²`,
/// `p ← p − lr/(1−β1ᵗ) · m / (sqrt(v)/sqrt(1−β2ᵗ) + ε)`.
/// Moments live in plain buffers, one pair per parameter, in parameter order, so they can be checkpointed.
public final class AdamW: @unchecked Sendable {
    public struct Config: Sendable, Equatable, Codable {
        public var beta1: Float, beta2: Float, eps: Float, weightDecay: Float
        public init(beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8, weightDecay: Float = 0.01) {
            self.beta1 = beta1; self.beta2 = beta2; self.eps = eps; self.weightDecay = weightDecay
        }
    }

    public let parameters: [Parameter]
    public var config: Config
    /// Number of completed steps (PyTorch's `state['step']`).
    public var step: Int = 0
    /// First and second moments, `m[i]`/`v[i]` for `parameters[i]`.
    public let m: [FloatBuffer]
    public let v: [FloatBuffer]
    /// Per-parameter learning-rate multipliers (parameter groups): parameter `i` steps with `lr · lrScales[i]`,
    /// its decoupled weight decay too (as a PyTorch parameter group with its own `lr`). All 1 by default.
    public var lrScales: [Float]

    public init(parameters: [Parameter], config: Config = Config()) {
        self.parameters = parameters
        self.config = config
        m = parameters.map { FloatBuffer(count: $0.count) }
        v = parameters.map { FloatBuffer(count: $0.count) }
        lrScales = [Float](repeating: 1, count: parameters.count)
    }

    /// Applies one update with learning rate `lr` using the current gradients (which are left untouched).
    public func update(lr: Float) {
        step += 1
        let c = config
        let bc1 = 1 - Foundation.pow(Double(c.beta1), Double(step))
        let bc2 = 1 - Foundation.pow(Double(c.beta2), Double(step))
        let bc2Sqrt = Float(bc2.squareRoot())
        for (i, p) in parameters.enumerated() {
            let lr = lr * lrScales[i]
            let stepSize = Float(Double(lr) / bc1)
            let decayFactor: Float = p.decay ? 1 - lr * c.weightDecay : 1
            let w = SendablePointer(p.value), g = SendablePointer(p.grad)
            let mp = SendablePointer(m[i].pointer), vp = SendablePointer(v[i].pointer)
            Parallel.forRanges(p.count, minChunk: 8192) { a, b in
                for j in a..<b {
                    let gj = g[j]
                    let mj = c.beta1 * mp[j] + (1 - c.beta1) * gj
                    let vj = c.beta2 * vp[j] + (1 - c.beta2) * gj * gj
                    mp[j] = mj
                    vp[j] = vj
                    let denom = vj.squareRoot() / bc2Sqrt + c.eps
                    w[j] = w[j] * decayFactor - stepSize * mj / denom
                }
            }
        }
    }

    /// Sets every parameter's gradient to zero.
    public func zeroGradients() {
        for p in parameters { p.grad.update(repeating: 0, count: p.count) }
    }
}

/// Global gradient-norm clipping as `torch.nn.utils.clip_grad_norm_` (L2 over all parameters).
public enum GradientClipping {
    /// L2 norm of all gradients together, accumulated in Double.
    public static func globalNorm(_ parameters: [Parameter]) -> Double {
        var total = 0.0
        for p in parameters {
            for j in 0..<p.count { let g = Double(p.grad[j]); total += g * g }
        }
        return total.squareRoot()
    }

    /// Scales all gradients by `maxNorm / (norm + 1e-6)` when that is below 1. Returns the norm before clipping.
    @discardableResult
    public static func clip(_ parameters: [Parameter], maxNorm: Double) -> Double {
        let norm = globalNorm(parameters)
        let coef = maxNorm / (norm + 1e-6)
        if coef < 1 {
            let f = Float(coef)
            for p in parameters { for j in 0..<p.count { p.grad[j] *= f } }
        }
        return norm
    }
}
