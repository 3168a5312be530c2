import CBLAS
import Foundation
import QSTCore

/// GPTQ's asymmetric target (as in GPTAQ, Li et al. 2025): when a linear's inputs come from a model whose earlier
/// linears are quantized (`X_q`), the output it should reproduce is still the full-precision model's, `X_f·wᵀ`. Per
/// row, `‖X_f w − X_q ŵ‖² = ‖X_q (w* − ŵ)‖² + const` with `w* = H⁻¹ C w`, `H = X_qᵀX_q`, `C = X_qᵀX_f`, so GPTQ
/// run on `w*` with `H` minimises it. With the ridge `λ‖w* − w‖²` (λ = damp · mean diag H, as GPTQ dampens):
/// `w* = (H + λI)⁻¹ (C + λI) w`, which is `w` itself when `X_q = X_f`.
extension NF4GPTQ {
    /// `w [rows, cols]` → `w* [rows, cols]`; `gram` = `X_qᵀX_q` `[cols, cols]`; `projected [rows, cols]` = the
    /// rows `C w_r = X_qᵀ (X_f w_r)` (`projected[r, i] = Σₜ x_q[t, i] · y_f[t, r]`, `y_f = X_f Wᵀ` the
    /// full-precision outputs; the caller forms it from `C` or from `y_f`, whichever is cheaper). Throws a
    /// one-line error naming `file` and `tensor` if `H + λI` is not positive definite.
    public static func asymmetricTarget(
        _ w: UnsafeBufferPointer<Float>, rows: Int, cols: Int, gram: [Float], projected: [Float], damp: Double,
        file: String, tensor: String
    ) throws -> [Float] {
        guard rows * cols == w.count, gram.count == cols * cols, projected.count == rows * cols else {
            throw QSTError.tensor(file, tensor, "GPTQ target: sizes do not fit a \(rows)×\(cols) matrix")
        }
        var h = gram.map(Double.init)
        let lambda = damp * (0..<cols).reduce(0.0) { $0 + h[$1 * cols + $1] } / Double(cols)
        guard lambda > 0 else { return Array(w) }
        for i in 0..<cols { h[i * cols + i] += lambda }
        // Row r of B is (C + λI) w_r; read column-major, B's rows are the right-hand sides, one per column, and
        // the solution overwrites it in the same layout.
        var b = [Double](repeating: 0, count: rows * cols)
        for k in 0..<(rows * cols) { b[k] = Double(projected[k]) + lambda * Double(w[k]) }
        var uplo = CChar(UInt8(ascii: "L")), n = Int32(cols), nrhs = Int32(rows), lda = Int32(cols), info: Int32 = 0
        h.withUnsafeMutableBufferPointer { dpotrf_(&uplo, &n, $0.baseAddress!, &lda, &info) }
        guard info == 0 else {
            throw QSTError.tensor(file, tensor, "GPTQ target: the Gram matrix is not positive definite")
        }
        var ldb = Int32(cols)
        h.withUnsafeBufferPointer { hp in
            b.withUnsafeMutableBufferPointer {
                dpotrs_(&uplo, &n, &nrhs, hp.baseAddress!, &lda, $0.baseAddress!, &ldb, &info)
            }
        }
        guard info == 0 else { throw QSTError.tensor(file, tensor, "GPTQ target: the solve failed (\(info))") }
        let out = b.map(Float.init)
        if let bad = out.firstIndex(where: { !$0.isFinite }) {
            throw QSTError.tensor(file, tensor, "GPTQ target: value \(bad) is not finite")
        }
        return out
    }
}
