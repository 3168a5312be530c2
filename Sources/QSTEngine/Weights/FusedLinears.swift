import QSTKernels
import QSTNN
import struct QSTCore.SendablePointer

/// Several linears that read the same input, run as one parallel job when decoding: q, k and v; gate and
/// up. Why: a decode step splits each product over the cores, and every split is a synchronisation;
/// SmolLM2's k and v (0.11 M multiply-adds each) are too small to split on their own and ran on one core
/// while the other waited. One job over the union of their output rows halves the synchronisations
/// and keeps both cores busy. Each output row is computed exactly as by the linear's own `forward` (the
/// GEMV loops compute every row on its own), so results are the same bits.
enum FusedLinears {
    /// `outs[i] = x · W_iᵀ` for every part; falls back to one `forward` per part unless all are kernel-backed
    /// quantized linears without bias and the rows are few enough for the GEMV loops (`runsGEMV`: up to 4
    /// rows on every path, up to 12–32 on the vector paths — the server's batched decode steps).
    static func forward(
        _ parts: [(linear: any LinearWeights, out: UnsafeMutablePointer<Float>)], x: UnsafePointer<Float>,
        n: Int, context: MatmulContext
    ) {
        if !fusedForward(parts, x: x, n: n, context: context) {
            for p in parts { p.linear.forward(out: p.out, x: x, n: n, accumulate: false, context: context) }
        }
    }

    private static func fusedForward(
        _ parts: [(linear: any LinearWeights, out: UnsafeMutablePointer<Float>)],
        x: UnsafePointer<Float>, n: Int, context: MatmulContext
    ) -> Bool {
        guard n > 0, context.path != .dequantizeSGEMM, !context.rowIndependent else { return false }
        let kernel = context.path == .kernelsAuto ? QST_KERNEL_AUTO : QST_KERNEL_EXACT
        var weights: [qst_weight] = [], outs: [SendablePointer<Float>] = [], offsets: [Int] = [0]
        var macs = 0
        for p in parts {
            guard let q = p.linear as? QuantizedLinear, q.bias == nil, let w = q.kernelWeight,
                w.k == Int64(parts[0].linear.inFeatures), q.runsGEMV(rows: n, context: context)
            else { return false }
            weights.append(w)
            outs.append(SendablePointer(p.out))
            offsets.append(offsets.last! + q.outFeatures)
            macs += n * q.outFeatures * q.inFeatures
        }
        let total = offsets.last!, k = parts[0].linear.inFeatures
        let xs = SendablePointer(x), shared = SendableWeights(weights), failed = FloatBuffer(count: 1)
        let fp = SendablePointer(failed.pointer), bounds = offsets, targets = outs
        OutputSplit.run(outFeatures: total, threads: context.threads, macs: macs) { c0, c1 in
            for i in 0..<shared.weights.count {
                let lo = max(c0, bounds[i]), hi = min(c1, bounds[i + 1])
                guard lo < hi else { continue }
                var w = shared.weights[i]
                let width = bounds[i + 1] - bounds[i]
                let rc = qst_matmul_ex(
                    xs.base, Int64(n), Int64(k), &w, targets[i].base, Int64(width),
                    Int64(lo - bounds[i]), Int64(hi - bounds[i]), kernel, QST_SHAPE_AUTO)
                if rc != QST_MATMUL_OK { fp[0] = 1 }
            }
        }
        return failed[0] == 0
    }
}

/// The kernels' weight descriptors hold raw pointers the workers only read.
private struct SendableWeights: @unchecked Sendable {
    let weights: [qst_weight]
    init(_ weights: [qst_weight]) { self.weights = weights }
}
