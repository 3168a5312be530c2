import CBLAS
import Foundation
import QSTCore

/// GPTQ (OPTQ, Frantar et al. 2022) in the NF4 grid: the codes of a linear's weights are chosen column by column
/// (input channel by input channel), and each column's rounding error is pushed onto the columns not yet
/// quantized through the inverse of the input Gram matrix `H = XᵀX`, so that the layer's *output* error
/// `‖(W − Ŵ)Xᵀ‖` stays small, not each weight's. Block scales are chosen when the quantizer reaches a block's
/// first column, by the weighted scale search (NF4ScaleSearch) on the error-updated weights. The result is an
/// ordinary NF4 tensor: the decoder reads `NF4[c]·scale` whatever chose the codes (Formats/NF4.md §7).
///
/// Steps (the paper's, with NF4 instead of a uniform grid): dead channels (`H[i,i] = 0`) get `H[i,i] = 1` and
/// zero weights; `H += λI` with `λ = damp · mean(diag H)`; `U` = the upper Cholesky factor of `H⁻¹`; then, in
/// lazy batches of `batch` columns, for column `i`: `q = NF4-round(w)`, `e = (w − q) / U[i,i]`,
/// `w[:, j] −= e · U[i, j]` for the batch's later columns, and after the batch one matrix product carries the
/// batch's errors to every later column. Rows are independent given `U`, so the batch's column loop runs in
/// parallel over rows; the products go to BLAS.
public enum NF4GPTQ {
    public struct Settings: Sendable, Equatable {
        /// λ as a fraction of the mean diagonal of H (the paper's 1 %).
        public var damp: Double = 0.01
        /// Columns per lazy batch (the paper's 128).
        public var batch: Int = 128
        /// How each block's scale is searched on the updated weights.
        public var search = NF4SearchSettings()
        /// Quantize the columns in order of decreasing `H[i,i]` (the paper's "act-order"): the loudest input
        /// channels go first, while the most columns remain to absorb their error. Blocks stay 64 consecutive
        /// input channels; a block's scale is chosen when the first of its columns comes up.
        public var actOrder = true
        /// Coordinate passes of the scale refit after the columns are quantized (0 = none; NF4GPTQRefit).
        public var refitPasses = 0
        public init() {}
    }

    /// `w`: row-major `[rows, cols]` (rows = output channels, cols = input channels); `gram`: `[cols, cols]`
    /// symmetric, `Σₜ xₜ xₜᵀ` over the calibration tokens (any positive multiple gives the same result).
    /// `cols` must be a multiple of the block size (each block lies in one row). Throws one-line errors naming
    /// `file` and `tensor`.
    public static func quantize(
        _ w: UnsafeBufferPointer<Float>, rows: Int, cols: Int, gram: [Float],
        parameters: NF4Parameters, settings: Settings = Settings(),
        file: String, tensor: String
    ) throws -> NF4Tensor {
        let bs = parameters.blockSize
        guard rows > 0, cols > 0, rows * cols == w.count else {
            throw QSTError.tensor(file, tensor, "GPTQ: \(w.count) values are not a \(rows)×\(cols) matrix")
        }
        guard cols % bs == 0 else {
            throw QSTError.tensor(file, tensor, "GPTQ: rows of \(cols) are not whole blocks of \(bs)")
        }
        guard gram.count == cols * cols else {
            throw QSTError.tensor(file, tensor, "GPTQ: Gram matrix has \(gram.count) values, needs \(cols)×\(cols)")
        }
        if let bad = gram.firstIndex(where: { !$0.isFinite }) {
            throw QSTError.tensor(file, tensor, "GPTQ: Gram matrix value \(bad) is \(gram[bad])")
        }
        guard settings.damp > 0, settings.batch > 0, settings.batch % bs == 0 else {
            throw QSTError.tensor(
                file, tensor,
                "GPTQ: damp \(settings.damp) must be > 0 and the batch \(settings.batch) a multiple of \(bs)")
        }
        // Checks the values (NaN/inf named by element) and the parameters; gives the blocks' absmax.
        let plain = try NF4.quantize(
            w, parameters: NF4Parameters(blockSize: bs, doubleQuant: false, dqBlockSize: parameters.dqBlockSize),
            file: file, tensor: tensor)

        let diag = (0..<cols).map { gram[$0 * cols + $0] }
        let dead = diag.map { $0 <= 0 }
        // perm[c] = the input channel quantized c-th; position[channel] = its place in that order.
        let perm =
            settings.actOrder
            ? (0..<cols).sorted { diag[$0] > diag[$1] || (diag[$0] == diag[$1] && $0 < $1) }
            : Array(0..<cols)
        var position = [Int](repeating: 0, count: cols)
        for (c, ch) in perm.enumerated() { position[ch] = c }
        var permuted = gram
        if settings.actOrder {
            for i in 0..<cols { for j in 0..<cols { permuted[i * cols + j] = gram[perm[i] * cols + perm[j]] } }
        }
        let u = try inverseCholeskyUpper(
            permuted, n: cols, dead: perm.map { dead[$0] }, damp: settings.damp,
            file: file, tensor: tensor)
        // Column c starts its block's scale when it is the first of the block's channels in the order.
        var seen = [Bool](repeating: false, count: cols / bs)
        let startsBlock = perm.map { ch -> Bool in
            defer { seen[ch / bs] = true }; return !seen[ch / bs]
        }
        // Per-column weights of the block search: the diagonal (mean squared activation, up to a factor) with the
        // same floor as NF4Calibration.weights.
        let mean = diag.reduce(0.0) { $0 + Double(max($1, 0)) } / Double(cols)
        let importance = diag.map { max($0, 0) + Float(mean * 1e-3) }

        // With double quantization the block scales are stored as 8-bit codes under a per-256-blocks scale and an
        // offset; those two come from the weighted search's scales on the original weights (as NF4ScaleSearch
        // would store them), and each block then picks, among the codes near its searched scale, the one whose
        // decoded scale errs least.
        let dq: DoubleQuantGrid?
        if parameters.doubleQuant {
            let workers = NF4.workerCount(w.count, threads: 0, threshold: NF4.quantizeParallelThreshold)
            let first = NF4ScaleSearch.searchedScales(
                w, absmax: plain.absmax, blockSize: bs, importance: importance,
                rowLength: cols, settings: settings.search, workers: workers)
            let grid = NF4ScaleSearch.doubleQuantGrid(first, dqBlockSize: parameters.dqBlockSize)
            dq = DoubleQuantGrid(absmax2: grid.second.absmax, offset: grid.offset, dqBlockSize: parameters.dqBlockSize)
        } else {
            dq = nil
        }

        // Work on Wᵀ ([cols, rows], columns in quantization order): a column of W is a contiguous row, and the
        // batch update is one GEMM. The parallel column loop reads and writes copies behind plain pointers,
        // freed on return.
        let blocksPerRow = cols / bs, batch = settings.batch, search = settings.search
        let W = copy([Float](repeating: 0, count: cols * rows)), E = copy([Float](repeating: 0, count: batch * rows))
        for r in 0..<rows {
            for c in 0..<cols where !dead[perm[c]] { W[c * rows + r] = w[r * cols + perm[c]] }
        }
        let S = copy([Float](repeating: 0, count: rows * blocksPerRow))  // decoded scales (what the file decodes)
        let scaleCodes = dq == nil ? 0 : rows * blocksPerRow
        let SC = copy([UInt8](repeating: 0, count: scaleCodes))
        let C = copy([UInt8](repeating: 0, count: (rows * cols + 1) / 2))
        let U = copy(u), I = copy(importance), P = copy(perm), POS = copy(position), ST = copy(startsBlock)
        defer {
            W.base.deallocate(); E.base.deallocate(); S.base.deallocate(); SC.base.deallocate(); C.base.deallocate()
            U.base.deallocate(); I.base.deallocate(); P.base.deallocate(); POS.base.deallocate(); ST.base.deallocate()
        }
        let workers = NF4.workerCount(rows * cols, threads: 0, threshold: NF4.quantizeParallelThreshold)
        for i1 in stride(from: 0, to: cols, by: batch) {
            let i2 = min(cols, i1 + batch)
            Parallel.forRanges(rows, threads: workers, minChunk: 16) { r0, r1 in
                var block = NF4ScaleSearch.Block(capacity: bs)
                defer { block.release() }
                for c in i1..<i2 {
                    let col = W.base + c * rows
                    let channel = P[c], g = channel / bs
                    if ST[c] {
                        for r in r0..<r1 {
                            chooseScale(
                                &block, w: W.base, positions: POS.base + g * bs, row: r, rows: rows,
                                blockSize: bs, importance: I.base + g * bs, search: search, dq: dq,
                                blockIndex: r * blocksPerRow + g, scale: S.base, scaleCode: SC.base)
                        }
                    }
                    let d = U[c * cols + c]
                    let e = E.base + (c - i1) * rows
                    for r in r0..<r1 {
                        let s = S.base[r * blocksPerRow + g]
                        let x = col[r]
                        let q = NF4ScaleSearch.code(x * (1 / s), block.mid)
                        let k = r * cols + channel
                        if k & 1 == 0 {
                            C.base[k >> 1] = (C.base[k >> 1] & 0x0F) | UInt8(q << 4)
                        } else {
                            C.base[k >> 1] = (C.base[k >> 1] & 0xF0) | UInt8(q)
                        }
                        e[r] = (x - block.values[q] * s) / d
                    }
                    // The batch's later columns take this column's error now; the rest after the batch.
                    for j in (c + 1)..<i2 {
                        let f = U[c * cols + j]
                        if f == 0 { continue }
                        let dst = W.base + j * rows
                        for r in r0..<r1 { dst[r] -= e[r] * f }
                    }
                }
            }
            if i2 < cols {
                // Wᵀ[i2:, :] −= U[i1:i2, i2:]ᵀ · E  (M = cols−i2, N = rows, K = i2−i1).
                cblas_sgemm(
                    CblasRowMajor, CblasTrans, CblasNoTrans, Int32(cols - i2), Int32(rows), Int32(i2 - i1),
                    -1, U.base + i1 * cols + i2, Int32(cols), E.base, Int32(rows), 1,
                    W.base + i2 * rows, Int32(rows))
            }
        }
        if settings.refitPasses > 0 {
            refitScales(
                w: w, rows: rows, cols: cols, blockSize: bs, gram: gram, dead: dead, damp: settings.damp,
                passes: settings.refitPasses, codes: C.base, scale: S.base, scaleCode: SC.base, dq: dq)
        }
        let codes = Array(UnsafeBufferPointer(start: C.base, count: (rows * cols + 1) / 2))
        if let dq {
            return NF4Tensor(
                count: rows * cols, blockSize: bs, codes: codes, absmax: [],
                absmaxCodes: Array(UnsafeBufferPointer(start: SC.base, count: scaleCodes)),
                absmax2: dq.absmax2, absmaxOffset: dq.offset, dqBlockSize: parameters.dqBlockSize)
        }
        return NF4Tensor(
            count: rows * cols, blockSize: bs, codes: codes,
            absmax: Array(UnsafeBufferPointer(start: S.base, count: rows * blocksPerRow)),
            dqBlockSize: parameters.dqBlockSize)
    }

    /// A copy of `values` (at least one element) for the parallel column loop to read; the caller deallocates it.
    static func copy<T>(_ values: [T]) -> SendablePointer<T> {
        let p = UnsafeMutablePointer<T>.allocate(capacity: max(1, values.count))
        _ = UnsafeMutableBufferPointer(start: p, count: values.count).initialize(from: values)
        return SendablePointer(p)
    }

    /// The fixed second level of double quantization: one scale per `dqBlockSize` blocks and the offset.
    struct DoubleQuantGrid: Sendable {
        var absmax2: [Float]
        var offset: Float
        var dqBlockSize: Int
    }

    /// One block's scale from its current (error-updated) weights: the weighted search, then with double
    /// quantization the 8-bit code whose decoded scale errs least. Writes the decoded scale (and code).
    /// `positions[i]`: where the block's channel `i` sits in `w` (Wᵀ in quantization order).
    @inline(__always)
    static func chooseScale(
        _ block: inout NF4ScaleSearch.Block, w: UnsafeMutablePointer<Float>,
        positions: UnsafePointer<Int>, row r: Int, rows: Int, blockSize bs: Int, importance: UnsafePointer<Float>,
        search: NF4SearchSettings,
        dq: DoubleQuantGrid?, blockIndex b: Int, scale: UnsafeMutablePointer<Float>,
        scaleCode: UnsafeMutablePointer<UInt8>
    ) {
        var m: Float = 0
        for i in 0..<bs {
            let v = w[positions[i] * rows + r]
            block.x[i] = v; block.w[i] = importance[i]
            m = max(m, abs(v))
        }
        block.n = bs
        let s = block.bestScale(absmax: m, grid: search.multipliers, refinements: search.refinements)
        guard let dq else { scale[b] = s; return }
        let a2 = dq.absmax2[b / dq.dqBlockSize]
        DynamicMap8.signedCode.withUnsafeBufferPointer { map in
            let u = (s - dq.offset) * (1 / a2)
            let near = u.isFinite ? DynamicMap8.nearestIndex(u, code: map.baseAddress!) : 127
            let pick = block.bestDoubleQuantCode(
                current: near, absmax: m, absmax2: a2, offset: dq.offset,
                map: map.baseAddress!)
            scaleCode[b] = pick
            scale[b] = map[Int(pick)] * a2 + dq.offset
        }
    }

    /// `U` (row-major, upper) with `H⁻¹ = UᵀU` for `H = gram + λI` (dead channels' diagonal set to 1 first), in
    /// double; if the factorization fails the damping is raised tenfold, up to three times.
    static func inverseCholeskyUpper(
        _ gram: [Float], n: Int, dead: [Bool], damp: Double, file: String,
        tensor: String
    ) throws -> [Float] {
        var base = gram.map(Double.init)
        for i in 0..<n where dead[i] { base[i * n + i] = 1 }
        let meanDiag = (0..<n).reduce(0.0) { $0 + base[$1 * n + $1] } / Double(n)
        var lambda = damp * meanDiag
        for _ in 0..<4 {
            var h = base
            for i in 0..<n { h[i * n + i] += lambda }
            if let u = factor(&h, n: n) { return u }
            lambda *= 10
        }
        throw QSTError.tensor(
            file, tensor, "GPTQ: the Gram matrix is not positive definite even with damping \(lambda / 10)")
    }

    /// Cholesky of H, inverse from it, Cholesky of the inverse. LAPACK is column-major: a column-major lower
    /// factor read row-major is the upper factor we want (H is symmetric, so its layout does not matter).
    private static func factor(_ h: inout [Double], n: Int) -> [Float]? {
        var uplo = CChar(UInt8(ascii: "L")), nn = Int32(n), lda = Int32(n), info: Int32 = 0
        h.withUnsafeMutableBufferPointer { dpotrf_(&uplo, &nn, $0.baseAddress!, &lda, &info) }
        guard info == 0 else { return nil }
        h.withUnsafeMutableBufferPointer { dpotri_(&uplo, &nn, $0.baseAddress!, &lda, &info) }
        guard info == 0 else { return nil }
        // dpotri filled the column-major lower triangle (row-major upper): mirror it.
        for i in 0..<n { for j in (i + 1)..<max(i + 1, n) { h[j * n + i] = h[i * n + j] } }
        h.withUnsafeMutableBufferPointer { dpotrf_(&uplo, &nn, $0.baseAddress!, &lda, &info) }
        guard info == 0 else { return nil }
        var u = [Float](repeating: 0, count: n * n)
        for i in 0..<n { for j in i..<n { u[i * n + j] = Float(h[i * n + j]) } }
        guard u.allSatisfy(\.isFinite) else { return nil }
        return u
    }
}
