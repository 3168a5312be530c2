import CBLAS
import QSTKernels
import QSTNN
import enum QSTCore.Parallel
import struct QSTCore.SendablePointer

/// How quantized (NF4/BF16) linears multiply.
public enum MatmulPath: String, Sendable, CaseIterable {
    /// Dequantize a tile of rows to F32 in a reusable scratch buffer, then `cblas_sgemm`. Exact F32
    /// products; the reference the fast paths are tested against.
    case dequantizeSGEMM = "sgemm"
    /// QSTKernels `qst_matmul` with full-F32 products (AVX-512 or AVX2 FMA), weights decoded in registers.
    case kernelsExact = "exact"
    /// QSTKernels' fastest path: may round x and W to bfloat16 (AVX-512) for many-row products (~1e-3 relative);
    /// where the CPU has no vector kernel at all (scalar only), dequantize + sgemm for those. Side networks
    /// decode from bfloat16 copies of their weights on this path (`SidePackPrecision`).
    case kernelsAuto = "auto"
}

/// Per-forward state shared by all linears: the chosen path and scratch that grows to the largest tile.
/// Not thread-safe: one per running forward.
public final class MatmulContext {
    public let path: MatmulPath
    /// Elements of dequantized weights per tile (bounds the scratch; 256 K floats = 1 MiB).
    public let tileElements: Int
    private var tile = FloatBuffer(count: 0)
    private var temp = FloatBuffer(count: 0)

    /// Worker count, fixed for this context's life (QST_THREADS at its creation, or the processor count).
    public let threads: Int

    /// When set, each row of `x` gets the same bits whatever the other rows: every linear runs the kernels'
    /// GEMM loops, whatever the row count (not the GEMV loops, chosen for ≤ 4 rows, nor OpenBLAS, whose loops
    /// also depend on the matrix sizes). The training forward needs this: a cached example's frozen states,
    /// computed in one micro-batch, must equal what another micro-batch would compute (BaseStateCache).
    public var rowIndependent = false

    public init(path: MatmulPath = .dequantizeSGEMM, tileElements: Int = 1 << 18, threads: Int = Parallel.threadCount())
    {
        self.path = path; self.tileElements = max(1, tileElements); self.threads = max(1, threads)
    }

    func tileBuffer(_ count: Int) -> UnsafeMutablePointer<Float> {
        if tile.count < count { tile = FloatBuffer(count: count) }
        return tile.pointer
    }

    func tempBuffer(_ count: Int) -> UnsafeMutablePointer<Float> {
        if temp.count < count { temp = FloatBuffer(count: count) }
        return temp.pointer
    }
}

/// A linear layer `y = x·Wᵀ + b` whatever the weights' storage, so the same decoder block runs over frozen
/// NF4 weights and over trainable F32 ones (the side network).
public protocol LinearWeights {
    var inFeatures: Int { get }
    var outFeatures: Int { get }
    /// `out [n, outFeatures]` = (or += when `accumulate`) `x [n, inFeatures] · Wᵀ (+ bias)`.
    func forward(
        out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, n: Int, accumulate: Bool,
        context: MatmulContext)
}

/// F32 weights `[outFeatures, inFeatures]` in memory (mapped or owned by `owner`).
public struct DenseLinear: LinearWeights {
    public let weight: UnsafePointer<Float>
    public let bias: UnsafePointer<Float>?
    public let inFeatures: Int
    public let outFeatures: Int
    public let owner: [AnyObject]

    public init(
        weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?, inFeatures: Int, outFeatures: Int,
        owner: [AnyObject] = []
    ) {
        self.weight = weight; self.bias = bias; self.inFeatures = inFeatures; self.outFeatures = outFeatures
        self.owner = owner
    }

    public func forward(
        out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, n: Int, accumulate: Bool,
        context: MatmulContext
    ) {
        if context.rowIndependent, n > 0 {
            let w = qst_weight(
                type: QST_WEIGHT_F32, block: 0, n: Int64(outFeatures), k: Int64(inFeatures),
                ld: Int64(inFeatures), data: UnsafeRawPointer(weight), absmax: nil)
            let dst = accumulate ? context.tempBuffer(n * outFeatures) : out
            if QuantizedLinear.kernelMatmul(
                x: x, n: n, k: inFeatures, weight: w, y: dst, outFeatures: outFeatures,
                kernel: QST_KERNEL_EXACT, threads: context.threads, shape: QST_SHAPE_GEMM)
            {
                if accumulate { QuantizedLinear.add(out, dst, count: n * outFeatures) }
                if let bias { QuantizedLinear.addBias(out, bias, rows: n, width: outFeatures) }
                return
            }
        }
        guard BLASThreadScope.isSingleThreaded, context.threads > 1 else {
            Linear.forward(
                out: out, x: x, weight: weight, bias: bias, n: n, inFeatures: inFeatures,
                outFeatures: outFeatures, accumulate: accumulate)
            return
        }
        let k = inFeatures, outF = outFeatures
        let xs = SendablePointer(x), ws = SendablePointer(weight), os = SendablePointer(out)
        OutputSplit.run(outFeatures: outF, threads: context.threads, macs: n * outF * k) { c0, c1 in
            cblas_sgemm(
                CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), Int32(c1 - c0), Int32(k),
                1, xs.base, Int32(k), ws.base + c0 * k, Int32(k), accumulate ? 1 : 0, os.base + c0, Int32(outF))
        }
        if let bias { QuantizedLinear.addBias(out, bias, rows: n, width: outF) }
    }
}

/// BF16 or NF4 weights read in place from a mapping; multiplied according to `MatmulContext.path`.
public struct QuantizedLinear: LinearWeights {
    public let tensor: WeightTensor
    public let bias: FloatBuffer?
    public let inFeatures: Int
    public let outFeatures: Int

    public init(tensor: WeightTensor, bias: FloatBuffer?) {
        self.tensor = tensor; self.bias = bias
        outFeatures = tensor.shape[0]; inFeatures = tensor.shape[1]
    }

    /// The kernels' description of the weights, or nil when their layout rules exclude them.
    var kernelWeight: qst_weight? {
        switch tensor.storage {
        case .f32(let p):
            return qst_weight(
                type: QST_WEIGHT_F32, block: 0, n: Int64(outFeatures), k: Int64(inFeatures),
                ld: Int64(inFeatures), data: UnsafeRawPointer(p), absmax: nil)
        case .bf16(let p):
            return qst_weight(
                type: QST_WEIGHT_BF16, block: 0, n: Int64(outFeatures), k: Int64(inFeatures),
                ld: Int64(inFeatures), data: UnsafeRawPointer(p), absmax: nil)
        case .nf4(let codes, let absmax, let bs):
            guard bs % 2 == 0, inFeatures % bs == 0 else { return nil }
            return qst_weight(
                type: QST_WEIGHT_NF4, block: Int32(bs), n: Int64(outFeatures), k: Int64(inFeatures),
                ld: Int64(inFeatures), data: UnsafeRawPointer(codes), absmax: absmax.constPointer)
        }
    }

    public func forward(
        out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, n: Int, accumulate: Bool,
        context: MatmulContext
    ) {
        guard n > 0 else { return }
        var done = false
        // Row-independent mode always takes the kernels (OpenBLAS's loops depend on the row count).
        if context.path != .dequantizeSGEMM || context.rowIndependent, let w = kernelWeight,
            context.rowIndependent || !Self.blasIsFaster(w, rows: n, path: context.path)
        {
            let kernel = context.path == .kernelsAuto ? QST_KERNEL_AUTO : QST_KERNEL_EXACT
            let dst = accumulate ? context.tempBuffer(n * outFeatures) : out
            done = Self.kernelMatmul(
                x: x, n: n, k: inFeatures, weight: w, y: dst, outFeatures: outFeatures,
                kernel: kernel, threads: context.threads,
                shape: context.rowIndependent ? QST_SHAPE_GEMM : QST_SHAPE_AUTO)
            if done, accumulate { Self.add(out, dst, count: n * outFeatures) }
        }
        if !done { tiledSGEMM(out: out, x: x, n: n, accumulate: accumulate, context: context) }
        if let bias { Self.addBias(out, bias.constPointer, rows: n, width: outFeatures) }
    }

    /// `--matmul auto` where only the scalar loops could run a many-row product: dequantize + OpenBLAS
    /// sgemm is faster there (a fixed table in the kernels, so the choice is the same on every run).
    static func blasIsFaster(_ w: qst_weight, rows: Int, path: MatmulPath) -> Bool {
        guard path == .kernelsAuto else { return false }
        var probe = w
        return qst_matmul_prefers_blas(&probe, Int64(rows)) != 0
    }

    /// The path a product of `rows` rows of x times these weights takes under `path` ("avx2", "avx512_bf16",
    /// "sgemm", ...), for benchmark reports. Row-independent (training) mode always takes the kernels' GEMM.
    public func route(rows: Int, path: MatmulPath, rowIndependent: Bool = false) -> String {
        guard path != .dequantizeSGEMM || rowIndependent, var w = kernelWeight else { return "sgemm" }
        if !rowIndependent, Self.blasIsFaster(w, rows: rows, path: path) { return "sgemm" }
        let kernel = path == .kernelsAuto ? QST_KERNEL_AUTO : QST_KERNEL_EXACT
        let shape = rowIndependent ? QST_SHAPE_GEMM : QST_SHAPE_AUTO
        let resolved = qst_matmul_resolve(&w, Int64(rows), kernel, shape)
        guard resolved >= 0 else { return "sgemm" }
        let loop =
            qst_matmul_resolve_shape(&w, Int64(rows), kernel, shape) == Int32(QST_SHAPE_GEMV.rawValue) ? "gemv" : "gemm"
        return String(cString: qst_matmul_kernel_name(resolved)) + "-" + loop
    }

    /// Splits the output columns over the workers; returns false if the kernels refuse the shape.
    static func kernelMatmul(
        x: UnsafePointer<Float>, n: Int, k: Int, weight: qst_weight,
        y: UnsafeMutablePointer<Float>, outFeatures: Int, kernel: qst_kernel, threads: Int,
        shape: qst_shape = QST_SHAPE_AUTO
    ) -> Bool {
        var probe = weight
        guard qst_matmul_resolve(&probe, Int64(n), kernel, shape) >= 0 else { return false }
        let xs = SendablePointer(x), ys = SendablePointer(y)
        let failed = FloatBuffer(count: 1)
        let fp = SendablePointer(failed.pointer)
        let shared = SendableWeight(weight)
        OutputSplit.run(outFeatures: outFeatures, threads: threads, macs: n * outFeatures * k) { c0, c1 in
            var w = shared.weight
            let rc = qst_matmul_ex(
                xs.base, Int64(n), Int64(k), &w, ys.base, Int64(outFeatures),
                Int64(c0), Int64(c1), kernel, shape)
            if rc != QST_MATMUL_OK { fp[0] = 1 }
        }
        return failed[0] == 0
    }

    func tiledSGEMM(
        out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, n: Int, accumulate: Bool,
        context: MatmulContext
    ) {
        let k = inFeatures
        if case .f32(let w) = tensor.storage {
            cblas_sgemm(
                CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), Int32(outFeatures), Int32(k),
                1, x, Int32(k), w, Int32(k), accumulate ? 1 : 0, out, Int32(outFeatures))
            return
        }
        if BLASThreadScope.isSingleThreaded, context.threads > 1 {
            // Each worker decodes and multiplies its own output rows with its own tile.
            let xs = SendablePointer(x), os = SendablePointer(out), t = tensor
            let outF = outFeatures, tileElements = context.tileElements
            OutputSplit.run(outFeatures: outF, threads: context.threads, macs: n * outF * k) { c0, c1 in
                let rowsPerTile = max(1, min(c1 - c0, tileElements / max(1, k)))
                let tile = UnsafeMutablePointer<Float>.allocate(capacity: rowsPerTile * k)
                defer { tile.deallocate() }
                var r0 = c0
                while r0 < c1 {
                    let rn = min(rowsPerTile, c1 - r0)
                    t.decode(start: r0 * k, count: rn * k, into: tile)
                    cblas_sgemm(
                        CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), Int32(rn), Int32(k),
                        1, xs.base, Int32(k), tile, Int32(k), accumulate ? 1 : 0, os.base + r0, Int32(outF))
                    r0 += rn
                }
            }
            return
        }
        let rowsPerTile = max(1, min(outFeatures, context.tileElements / max(1, k)))
        let tile = context.tileBuffer(rowsPerTile * k)
        let ts = SendablePointer(tile)
        let t = tensor
        var r0 = 0
        while r0 < outFeatures {
            let rn = min(rowsPerTile, outFeatures - r0)
            let base = r0
            // Decoding runs on our workers, the product on BLAS's: one after the other, never together.
            Parallel.forRanges(rn, minChunk: 8) { a, b in
                t.decode(start: (base + a) * k, count: (b - a) * k, into: ts.base + a * k)
            }
            cblas_sgemm(
                CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), Int32(rn), Int32(k),
                1, x, Int32(k), tile, Int32(k), accumulate ? 1 : 0, out + r0, Int32(outFeatures))
            r0 += rn
        }
    }

    static func add(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, count: Int) {
        cblas_saxpy(Int32(count), 1, src, 1, dst, 1)
    }

    static func addBias(_ out: UnsafeMutablePointer<Float>, _ bias: UnsafePointer<Float>, rows: Int, width: Int) {
        for r in 0..<rows { cblas_saxpy(Int32(width), 1, bias, 1, out + r * width, 1) }
    }
}

extension WeightTensor: @unchecked Sendable {}

/// The kernels' weight descriptor holds raw pointers the workers only read.
private struct SendableWeight: @unchecked Sendable {
    let weight: qst_weight
    init(_ weight: qst_weight) { self.weight = weight }
}

/// Splits output features into one contiguous range per worker (multiples of 16 for whole vector stores).
enum OutputSplit {
    /// Products smaller than this many multiply-adds run on the calling thread: splitting costs more than it
    /// saves. With the spinning worker pool (CWorkerPool) a split costs a few microseconds, so every decode
    /// linear of SmolLM2-135M (0.11 M to 0.9 M) but the two smallest runs on both cores (tg128 on AVX2 139 →
    /// 164 tok/s with this at 256 K; with GCD's wake-ups it had to be 4 M: BENCHMARKS.md §19).
    static let minParallelMACs = 1 << 18

    static func run(outFeatures: Int, threads: Int, macs: Int = .max, _ body: @Sendable (Int, Int) -> Void) {
        let groups = (outFeatures + 15) / 16
        let workers = macs < minParallelMACs ? 1 : threads
        Parallel.forRanges(groups, threads: workers, minChunk: 1) { g0, g1 in body(g0 * 16, min(outFeatures, g1 * 16)) }
    }
}

/// NF4 decoding of any element range (the C kernel wants an even start; odd starts take one element by hand).
public enum NF4Tile {
    public static func dequantize(
        codes: UnsafePointer<UInt8>, absmax: UnsafePointer<Float>, blockSize: Int,
        start: Int, count: Int, into dst: UnsafeMutablePointer<Float>
    ) {
        guard count > 0 else { return }
        var s = start, c = count, d = dst
        if s % 2 == 1 {
            let code = Int(codes[s / 2] & 0x0F)
            d[0] = qst_nf4_code_value(Int32(code)) * absmax[s / blockSize]
            s += 1; c -= 1; d += 1
        }
        if c > 0 { qst_nf4_dequantize_f32(codes, absmax, Int64(blockSize), Int64(s), Int64(c), d, Int32(QST_NF4_AUTO)) }
    }
}

/// The CPU features the kernels detected (after any `QST_KERNELS` cap), for reports.
public enum CPUKernels {
    public static func describe() -> String {
        var buffer = [CChar](repeating: 0, count: 512)
        let text = buffer.withUnsafeMutableBufferPointer { b -> String in
            qst_cpu_describe(b.baseAddress, Int32(b.count))
            return String(cString: b.baseAddress!)
        }
        return text.isEmpty ? "no vector extensions" : text
    }
}
