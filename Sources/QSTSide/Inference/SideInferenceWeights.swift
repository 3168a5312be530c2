import Foundation
import QSTKernels
import QSTNN

/// One side matrix as the decode loops read it: `W [outF, inF]` transposed and padded (`small_gemv.h`),
/// inside a `SideInferenceWeights` buffer.
struct PackedMatrix {
    let wt: UnsafePointer<Float>
    let inF, outF, ld: Int
    let path: Int32

    /// `y [n, outF] = x [n, inF] · Wᵀ (+ y when accumulate) (+ bias)`, every row on its own: a row gets the
    /// same bits whatever `n` (a prompt chunk or a decode step), on every vector path.
    @inline(__always)
    func apply(
        _ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, n: Int, bias: UnsafePointer<Float>? = nil,
        accumulate: Bool = false
    ) {
        let rc = qst_small_gemv(
            y, Int64(outF), x, Int64(inF), Int64(n), wt, Int64(ld), Int64(inF), Int64(outF), bias,
            accumulate ? 1 : 0, path)
        precondition(rc == 0, "qst_small_gemv refused \(outF)×\(inF) on path \(path)")
    }
}

/// A side network's matrices packed once for inference, shared by every request that runs it.
///
/// Why: while decoding, a side network's own work is streaming its float32 weights (7.9 MB for SmolLM2 at
/// r = 8) through a few multiply-adds per weight; with several side networks in one step they do not stay
/// in cache, and OpenBLAS's `sgemv` on 36–192-wide matrices spread over the tensor buffer ran at about
/// half the memory speed (BENCHMARKS.md §16, session 6). Here each matrix is transposed (outputs along
/// vector lanes, no horizontal sums) and all of them sit in one 64-byte-aligned buffer in the order a
/// token visits them — layer i's downsampler, then block i — so a step reads one forward stream that the
/// kernel prefetches ahead. Float32 as trained: the results differ from the BLAS products only in
/// summation order.
///
/// The packing is a copy: build it after the weights stop changing (it is for serving and evaluation, not
/// for a training loop that updates `weights`).
public final class SideInferenceWeights: @unchecked Sendable {
    public let weights: SideWeights
    /// Per layer: the adapter downsampler's A and B, or the linear downsampler (nil for pooling).
    let downA: [PackedMatrix?], downB: [PackedMatrix?]
    /// Per layer, the block matrices named by `SideFamily.packedBlockMatrices` (none for OPT, whose blocks
    /// keep their own path).
    let blocks: [[PackedMatrix]]
    /// The head's `upsample` (`[headSize, width]`).
    let up: PackedMatrix
    private let storage: UnsafeMutableRawPointer

    public init(_ weights: SideWeights) {
        self.weights = weights
        let c = weights.config, L = c.base.layerCount
        let path = qst_vec_best_path()
        let family = c.base.family
        // The order of the buffer is the order of use.
        var plan: [(name: String, layer: Int, slot: Int)] = []
        for i in 0..<L {
            let pre = c.downsamplePrefix(i)
            switch c.downsample {
            case .adapter: plan += [(pre + "adapter_A.weight", i, 0), (pre + "adapter_B.weight", i, 1)]
            case .linear: plan.append((pre + "weight", i, 0))
            case .avgpool, .maxpool: break
            }
            for (k, name) in family.packedBlockMatrices(layer: i).enumerated() { plan.append((name, i, 2 + k)) }
        }
        plan.append(("upsample.weight", 0, -1))
        func shape(_ name: String) -> (outF: Int, inF: Int) {
            let s = weights.spec(name)!.shape
            return (s[0], s.count > 1 ? s[1] : 1)
        }
        let floats = plan.reduce(0) { total, p in
            let s = shape(p.name)
            return total + s.inF * Int(qst_small_gemv_ld(Int64(s.outF)))
        }
        // Whole 2 MB pages, offered to the kernel as huge pages (one TLB entry per 2 MB of the stream).
        let page = 2 << 20, bytes = (max(1, floats) * 4 + page - 1) / page * page
        storage = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: page)
        #if os(Linux)
            _ = madvise(storage, bytes, MADV_HUGEPAGE)
        #endif
        let base = storage.bindMemory(to: Float.self, capacity: max(1, floats))
        var offset = 0
        var a = [PackedMatrix?](repeating: nil, count: L), b = a
        var blockMats = (0..<L).map {
            [PackedMatrix?](repeating: nil, count: family.packedBlockMatrices(layer: $0).count)
        }
        var upMat: PackedMatrix?
        for p in plan {
            let (outF, inF) = shape(p.name), ld = Int(qst_small_gemv_ld(Int64(outF)))
            let dst = base + offset
            qst_small_gemv_pack(dst, UnsafePointer(weights.value(p.name)), Int64(inF), Int64(outF))
            let m = PackedMatrix(wt: UnsafePointer(dst), inF: inF, outF: outF, ld: ld, path: path)
            offset += inF * ld
            switch p.slot {
            case -1: upMat = m
            case 0: a[p.layer] = m
            case 1: b[p.layer] = m
            default: blockMats[p.layer][p.slot - 2] = m
            }
        }
        downA = a; downB = b
        blocks = blockMats.map { $0.map { $0! } }
        up = upMat!
    }

    deinit { storage.deallocate() }

    /// Bytes of the packed copy.
    public var bytes: Int {
        (downA + downB).compactMap { $0 }.reduce(0) { $0 + $1.inF * $1.ld * 4 }
            + blocks.joined().reduce(0) { $0 + $1.inF * $1.ld * 4 } + up.inF * up.ld * 4
    }
}
