import Foundation
import QSTCore
import QSTKernels

/// Pointwise activations. Shapes: `x, out, dx, dout` are flat arrays of `count` floats.
public enum Activation: String, Sendable, CaseIterable {
    /// `x·σ(x)` (a.k.a. swish).
    case silu
    /// Exact GELU `0.5·x·(1 + erf(x/√2))`, PyTorch's default `nn.GELU()`.
    case gelu
    case relu

    /// Parses HF `hidden_act` names ("silu", "swish", "gelu", "relu").
    public init?(huggingFaceName name: String) {
        switch name {
        case "silu", "swish": self = .silu
        case "gelu": self = .gelu
        case "relu": self = .relu
        default: return nil
        }
    }

    @inline(__always) public func value(_ x: Float) -> Float {
        switch self {
        case .silu: return x / (1 + Foundation.exp(-x))
        case .gelu: return 0.5 * x * (1 + erf(x * 0.70710678118654752))
        case .relu: return x > 0 ? x : 0
        }
    }

    @inline(__always) public func derivative(_ x: Float) -> Float {
        switch self {
        case .silu:
            let s = 1 / (1 + Foundation.exp(-x))
            return s * (1 + x * (1 - s))
        case .gelu:
            let cdf = 0.5 * (1 + erf(x * 0.70710678118654752))
            let pdf = Foundation.exp(-0.5 * x * x) * 0.39894228040143268
            return cdf + x * pdf
        case .relu: return x > 0 ? 1 : 0
        }
    }

    /// `out = f(x)`; `out` may alias `x`.
    public func forward(out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, count: Int) {
        let o = SendablePointer(out), xs = SendablePointer(x), f = self
        Parallel.forRanges(count, minChunk: 4096) { a, b in
            for i in a..<b { o[i] = f.value(xs[i]) }
        }
    }

    /// `dx += f'(x) · dout`.
    public func backward(
        dx: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, x: UnsafePointer<Float>,
        count: Int
    ) {
        let g = SendablePointer(dx), dy = SendablePointer(dout), xs = SendablePointer(x), f = self
        Parallel.forRanges(count, minChunk: 4096) { a, b in
            for i in a..<b { g[i] += f.derivative(xs[i]) * dy[i] }
        }
    }
}

/// Gated MLP activation `h = act(gate) ⊙ up` (SwiGLU when `act` is SiLU, as in LLaMA's MLP).
/// Shapes: `gate, up, out, dgate, dup, dout` are `[n, f]` flattened to `count = n·f`.
public enum SwiGLU {
    public static func forward(
        out: UnsafeMutablePointer<Float>, gate: UnsafePointer<Float>,
        up: UnsafePointer<Float>, count: Int, activation: Activation = .silu
    ) {
        let o = SendablePointer(out), g = SendablePointer(gate), u = SendablePointer(up)
        Parallel.forRanges(count, minChunk: 4096) { a, b in
            // SiLU (every LLaMA-family MLP) in QSTKernels' vector loop: libm's scalar expf per element was
            // most of this loop's time.
            if activation == .silu,
                qst_silu_mul(o.base + a, g.base + a, u.base + a, Int64(b - a), Int32(QST_VEC_AUTO.rawValue)) == 0
            {
                return
            }
            for i in a..<b { o[i] = activation.value(g[i]) * u[i] }
        }
    }

    /// `dgate += act'(gate)·up·dout`, `dup += act(gate)·dout`.
    public static func backward(
        dgate: UnsafeMutablePointer<Float>, dup: UnsafeMutablePointer<Float>,
        dout: UnsafePointer<Float>, gate: UnsafePointer<Float>, up: UnsafePointer<Float>,
        count: Int, activation: Activation = .silu
    ) {
        let dg = SendablePointer(dgate), du = SendablePointer(dup), dy = SendablePointer(dout)
        let g = SendablePointer(gate), u = SendablePointer(up)
        Parallel.forRanges(count, minChunk: 4096) { a, b in
            for i in a..<b {
                dg[i] += activation.derivative(g[i]) * u[i] * dy[i]
                du[i] += activation.value(g[i]) * dy[i]
            }
        }
    }
}
