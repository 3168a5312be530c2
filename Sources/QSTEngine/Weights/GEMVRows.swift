import QSTKernels

/// Which products run the kernels' GEMV loops. Those loops compute every row of x on its own (the rows
/// of one call only share the weight decoding), so a row gets the same bits whether it is multiplied
/// alone or with others — what lets the server stack several requests' decode rows in one call and
/// still answer exactly as `qst-generate` does, and lets `FusedLinears` join products.
extension QuantizedLinear {
    /// True when `rows` rows of x times these weights run the kernels' GEMV loops under `context`
    /// (not OpenBLAS, not the GEMM loops, which the kernels choose past a per-path row count).
    func runsGEMV(rows: Int, context: MatmulContext) -> Bool {
        guard rows > 0, context.path != .dequantizeSGEMM, !context.rowIndependent, var w = kernelWeight,
            !Self.blasIsFaster(w, rows: rows, path: context.path)
        else { return false }
        let kernel = context.path == .kernelsAuto ? QST_KERNEL_AUTO : QST_KERNEL_EXACT
        return qst_matmul_resolve(&w, Int64(rows), kernel, QST_SHAPE_AUTO) >= 0
            && qst_matmul_resolve_shape(&w, Int64(rows), kernel, QST_SHAPE_AUTO) == Int32(QST_SHAPE_GEMV.rawValue)
    }
}

extension DecoderBlockWeights {
    /// Rows of one step (up to `cap`) that every linear of the block runs through the GEMV loops; at
    /// least `QST_GEMV_MAX_ROWS` (4), the rows any path keeps per row (the server's grouping before it knew
    /// the kernels' limits). On SmolLM2 NF4: 24 with AVX512_BF16, 16 with AVX512_VNNI (int16 GEMV), 12 on other
    /// AVX-512 CPUs, 8 on AVX2 (int16 GEMV), 4 on the scalar loops.
    func gemvRowLimit(context: MatmulContext, cap: Int = 32) -> Int {
        let linears = [q, k, v, o, gate, up, down]
        let fixed = Int(QST_GEMV_MAX_ROWS)
        var m = fixed
        while m < cap,
            linears.allSatisfy({ ($0 as? QuantizedLinear)?.runsGEMV(rows: m + 1, context: context) ?? false })
        {
            m += 1
        }
        return m
    }
}
