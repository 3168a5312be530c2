import Foundation
import QSTCore

/// `rope_scaling` from a Hugging Face config.json.
public enum RoPEScaling: Sendable, Equatable {
    case none
    /// `{"type": "linear", "factor": f}`: positions are divided by `factor`.
    case linear(factor: Double)
    /// `{"rope_type": "llama3", ...}` as in HF `_compute_llama3_parameters`.
    case llama3(factor: Double, lowFreqFactor: Double, highFreqFactor: Double, originalMaxPositionEmbeddings: Int)
}

/// Rotary position embedding in the HF `rotate_half` convention: within each head, element `i` pairs with
/// `i + headDim/2`, both rotated by angle `position · invFreq[i]`.
public enum RoPE {
    /// Inverse frequencies `[headDim/2]`: `1 / theta^(2i/headDim)`, then `scaling` applied.
    public static func inverseFrequencies(headDim: Int, theta: Double, scaling: RoPEScaling = .none) -> [Float] {
        let half = headDim / 2
        var inv = (0..<half).map { i in 1.0 / pow(theta, Double(2 * i) / Double(headDim)) }
        switch scaling {
        case .none:
            break
        case .linear(let factor):
            inv = inv.map { $0 / factor }
        case .llama3(let factor, let lowFreqFactor, let highFreqFactor, let originalMax):
            let oldContext = Double(originalMax)
            let lowFreqWavelen = oldContext / lowFreqFactor
            let highFreqWavelen = oldContext / highFreqFactor
            inv = inv.map { f in
                let wavelen = 2 * Double.pi / f
                if wavelen < highFreqWavelen { return f }  // high frequencies kept
                if wavelen > lowFreqWavelen { return f / factor }  // low frequencies fully scaled
                // In between: blend the scaled and unscaled frequency.
                let smooth = (oldContext / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor)
                return (1 - smooth) * f / factor + smooth * f
            }
        }
        return inv.map { Float($0) }
    }

    /// Fills `cos, sin [n, headDim/2]` for each token's `positions[t]` (HF computes the angle in F32).
    public static func cosSin(
        cos: UnsafeMutablePointer<Float>, sin: UnsafeMutablePointer<Float>,
        positions: UnsafePointer<Int32>, n: Int, invFreq: [Float]
    ) {
        let half = invFreq.count
        for t in 0..<n {
            let p = Float(positions[t])
            for i in 0..<half {
                let angle = Double(p * invFreq[i])
                cos[t * half + i] = Float(Foundation.cos(angle))
                sin[t * half + i] = Float(Foundation.sin(angle))
            }
        }
    }

    /// Rotates `x [n, nHeads·headDim]` in place using tables from `cosSin` (row `t` for token `t`).
    /// `rowStride` is the distance between token rows (defaults to `nHeads·headDim`) so q/k can be rotated
    /// inside a fused qkv buffer.
    public static func forward(
        x: UnsafeMutablePointer<Float>, cos: UnsafePointer<Float>, sin: UnsafePointer<Float>,
        n: Int, nHeads: Int, headDim: Int, rowStride: Int? = nil
    ) {
        rotate(
            x: x, cos: cos, sin: sin, n: n, nHeads: nHeads, headDim: headDim,
            rowStride: rowStride ?? nHeads * headDim, sign: 1)
    }

    /// Backward of `forward`: the rotation is orthogonal, so the gradient is rotated back in place
    /// (`dx = Rᵀ dy`). Apply it to the gradient w.r.t. the rotated tensor.
    public static func backward(
        dx: UnsafeMutablePointer<Float>, cos: UnsafePointer<Float>, sin: UnsafePointer<Float>,
        n: Int, nHeads: Int, headDim: Int, rowStride: Int? = nil
    ) {
        rotate(
            x: dx, cos: cos, sin: sin, n: n, nHeads: nHeads, headDim: headDim,
            rowStride: rowStride ?? nHeads * headDim, sign: -1)
    }

    private static func rotate(
        x: UnsafeMutablePointer<Float>, cos: UnsafePointer<Float>, sin: UnsafePointer<Float>,
        n: Int, nHeads: Int, headDim: Int, rowStride: Int, sign: Float
    ) {
        let half = headDim / 2
        let xs = SendablePointer(x), cs = SendablePointer(cos), ss = SendablePointer(sin)
        Parallel.forRanges(n, minChunk: 16) { t0, t1 in
            for t in t0..<t1 {
                let c = cs + t * half, s = ss + t * half
                for h in 0..<nHeads {
                    let v = xs + t * rowStride + h * headDim
                    for i in 0..<half {
                        let a = v[i], b = v[i + half]
                        let si = sign * s[i]
                        v[i] = a * c[i] - b * si
                        v[i + half] = b * c[i] + a * si
                    }
                }
            }
        }
    }
}
