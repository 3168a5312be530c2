import CBLAS
import Foundation
import QSTCore

/// The scale refit after GPTQ (Formats/NF4.md §7): with every code fixed, each row's block scales are re-solved to
/// minimise the row's output error on the calibration inputs, `(w − ŵ)ᵀ H (w − ŵ)` with `ŵⱼ = s_{b(j)} · NF4[cⱼ]`,
/// `w` the original weights and `H` the damped Gram matrix GPTQ used. GPTQ chooses a block's scale once, when the
/// block's first column comes up, on weights its later columns have not yet shifted; the refit sees the final
/// codes. The objective is a quadratic in the row's `nb` block scales, `const − 2cᵀs + sᵀAs` with
/// `A[a,b] = Σ_{i∈a, j∈b} zᵢ Hᵢⱼ zⱼ` and `c[a] = Σ_{i∈a} zᵢ (Hw)ᵢ` (`z` = the code values); it is minimised by
/// coordinate passes, each block's scale set to the representable value nearest its one-dimensional optimum
/// `(c[a] − Σ_{b≠a} A[a,b] s[b]) / A[a,a]` (with double quantization: the nearest 8-bit code's decoded scale under
/// the tensor's fixed second-level grid), kept only if the objective goes down. A scale stays positive.
extension NF4GPTQ {
    static func refitScales(
        w: UnsafeBufferPointer<Float>, rows: Int, cols: Int, blockSize bs: Int, gram: [Float], dead: [Bool],
        damp: Double, passes: Int, codes: UnsafePointer<UInt8>, scale: UnsafeMutablePointer<Float>,
        scaleCode: UnsafeMutablePointer<UInt8>, dq: DoubleQuantGrid?
    ) {
        let nb = cols / bs
        // H + λI (λ summed in double), dead channels' diagonal 1 first (as for the Cholesky factor). The products
        // are float32 BLAS (the sums over a block's entries and the passes are in double).
        var h = gram
        for i in 0..<cols where dead[i] { h[i * cols + i] = 1 }
        let lambda = damp * (0..<cols).reduce(0.0) { $0 + Double(h[$1 * cols + $1]) } / Double(cols)
        for i in 0..<cols { h[i * cols + i] = Float(Double(h[i * cols + i]) + lambda) }
        // Code values z and the weights GPTQ quantized (dead channels zero).
        var z = [Float](repeating: 0, count: rows * cols), x = [Float](repeating: 0, count: rows * cols)
        for k in 0..<(rows * cols) {
            let c = k & 1 == 0 ? codes[k >> 1] >> 4 : codes[k >> 1] & 0x0F
            z[k] = NF4.codeValues[Int(c)]
            if !dead[k % cols] { x[k] = w[k] }
        }
        // c[r, a] from Hw; A[r, a, b] from Y_a = Z[:, a] · H[a, :], one product per block.
        var hx = [Float](repeating: 0, count: rows * cols), y = [Float](repeating: 0, count: rows * cols)
        var lin = [Double](repeating: 0, count: rows * nb), quad = [Double](repeating: 0, count: rows * nb * nb)
        h.withUnsafeBufferPointer { hp in
            x.withUnsafeBufferPointer { xp in
                hx.withUnsafeMutableBufferPointer {
                    cblas_sgemm(
                        CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(rows), Int32(cols), Int32(cols), 1,
                        xp.baseAddress!, Int32(cols), hp.baseAddress!, Int32(cols), 0, $0.baseAddress!, Int32(cols))
                }
            }
            z.withUnsafeBufferPointer { zp in
                for a in 0..<nb {
                    y.withUnsafeMutableBufferPointer {
                        cblas_sgemm(
                            CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(rows), Int32(cols), Int32(bs), 1,
                            zp.baseAddress! + a * bs, Int32(cols), hp.baseAddress! + a * bs * cols, Int32(cols), 0,
                            $0.baseAddress!, Int32(cols))
                    }
                    for r in 0..<rows {
                        for b in 0..<nb {
                            var s = 0.0
                            for j in (b * bs)..<((b + 1) * bs) { s += Double(y[r * cols + j] * zp[r * cols + j]) }
                            quad[(r * nb + a) * nb + b] = s
                        }
                    }
                }
            }
        }
        for r in 0..<rows {
            for a in 0..<nb {
                var s = 0.0
                for j in (a * bs)..<((a + 1) * bs) { s += Double(z[r * cols + j] * hx[r * cols + j]) }
                lin[r * nb + a] = s
            }
        }
        DynamicMap8.signedCode.withUnsafeBufferPointer { map in
            for r in 0..<rows {
                let sc = scale + r * nb
                for _ in 0..<passes {
                    var changed = false
                    for a in 0..<nb {
                        let row = (r * nb + a) * nb, aa = quad[row + a]
                        guard aa > 0 else { continue }
                        var g = lin[r * nb + a]
                        for b in 0..<nb where b != a { g -= quad[row + b] * Double(sc[b]) }
                        let target = Float(g / aa)
                        var new = target, code: UInt8 = 0
                        if let dq {
                            let a2 = dq.absmax2[(r * nb + a) / dq.dqBlockSize]
                            let u = (target - dq.offset) * (1 / a2)
                            guard u.isFinite else { continue }
                            code = DynamicMap8.nearestIndex(u, code: map.baseAddress!)
                            new = map[Int(code)] * a2 + dq.offset
                        }
                        guard new.isNormal, new > 0, new != sc[a] else { continue }
                        let old = Double(sc[a]), nw = Double(new)
                        if aa * (nw * nw - old * old) - 2 * g * (nw - old) < 0 {
                            sc[a] = new
                            if dq != nil { scaleCode[r * nb + a] = code }
                            changed = true
                        }
                    }
                    if !changed { break }
                }
            }
        }
    }
}
