import CBLAS
import Foundation
import QSTKernels
import QSTNN

/// The side network's small per-token operations, serial and inline. During generation the side network
/// handles one row per step at width d/r (36 for SmolLM2); QSTNN's ops would each start a parallel loop
/// (and read the environment for the worker count), which costs more than the arithmetic. Same formulas,
/// in the same float32 order, as QSTNN's RMSNorm, LayerNorm, RoPE, activations and GatedMix.
enum SideInferenceOps {
    /// `y [n, outF] = x [n, inF] · Wᵀ (+ y when accumulate) (+ bias)`.
    @inline(__always)
    static func linear(
        _ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
        bias: UnsafePointer<Float>? = nil, n: Int, inF: Int, outF: Int, accumulate: Bool = false
    ) {
        guard n > 0, outF > 0, inF > 0 else { return }
        if n == 1 {
            cblas_sgemv(
                CblasRowMajor, CblasNoTrans, Int32(outF), Int32(inF), 1, w, Int32(inF), x, 1,
                accumulate ? 1 : 0, y, 1)
        } else {
            cblas_sgemm(
                CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), Int32(outF), Int32(inF), 1, x, Int32(inF),
                w, Int32(inF), accumulate ? 1 : 0, y, Int32(outF))
        }
        if let bias { for r in 0..<n { let row = y + r * outF; for j in 0..<outF { row[j] += bias[j] } } }
    }

    static func rmsNorm(
        _ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
        n: Int, d: Int, eps: Float
    ) {
        for r in 0..<n {
            let xr = x + r * d, or = out + r * d
            var ss: Float = 0
            for j in 0..<d { ss += xr[j] * xr[j] }
            let s = 1 / (ss / Float(d) + eps).squareRoot()
            for j in 0..<d { or[j] = (xr[j] * s) * w[j] }
        }
    }

    static func layerNorm(
        _ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
        _ b: UnsafePointer<Float>, n: Int, d: Int, eps: Float
    ) {
        for r in 0..<n {
            let xr = x + r * d, or = out + r * d
            var sum: Float = 0
            for j in 0..<d { sum += xr[j] }
            let m = sum / Float(d)
            var v: Float = 0
            for j in 0..<d { let c = xr[j] - m; v += c * c }
            let s = 1 / (v / Float(d) + eps).squareRoot()
            for j in 0..<d { or[j] = (xr[j] - m) * s * w[j] + b[j] }
        }
    }

    static func activate(_ x: UnsafeMutablePointer<Float>, count: Int, _ f: Activation) {
        for i in 0..<count { x[i] = f.value(x[i]) }
    }

    /// `gate = act(gate) ⊙ up`. SiLU (LLaMA's) runs QSTKernels' vector loop, as the base's MLP does (libm's
    /// `expf` per element: ~4 % of the side networks' decode time).
    static func gatedActivation(
        _ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count: Int,
        _ f: Activation
    ) {
        if f == .silu, qst_silu_mul(gate, gate, up, Int64(count), Int32(QST_VEC_AUTO.rawValue)) == 0 { return }
        for i in 0..<count { gate[i] = f.value(gate[i]) * up[i] }
    }

    /// `b = (1 − s) ⊙ a + s ⊙ b` row by row with `s = σ(z)` precomputed (GatedMix with out = b).
    static func mix(
        into b: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, sigma s: UnsafePointer<Float>,
        n: Int, d: Int
    ) {
        for r in 0..<n {
            let ar = a + r * d, br = b + r * d
            for j in 0..<d { br[j] = (1 - s[j]) * ar[j] + s[j] * br[j] }
        }
    }

    /// Rotate-half RoPE on `x [n, heads·hd]` with `cos, sin [n, hd/2]`.
    static func rope(
        _ x: UnsafeMutablePointer<Float>, cos: UnsafePointer<Float>, sin: UnsafePointer<Float>,
        n: Int, heads: Int, hd: Int
    ) {
        let half = hd / 2
        for t in 0..<n {
            let c = cos + t * half, s = sin + t * half
            for h in 0..<heads {
                let v = x + (t * heads + h) * hd
                for i in 0..<half {
                    let a = v[i], b = v[i + half]
                    v[i] = a * c[i] - b * s[i]
                    v[i + half] = b * c[i] + a * s[i]
                }
            }
        }
    }

    static func sigmoid(_ z: UnsafePointer<Float>, count: Int) -> [Float] {
        (0..<count).map { 1 / (1 + Foundation.exp(-z[$0])) }
    }
}
