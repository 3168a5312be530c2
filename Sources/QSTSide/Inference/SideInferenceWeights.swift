import Foundation
import QSTKernels
import enum QSTEngine.MatmulPath
import QSTNN

/// How a side network's matrices are stored for decoding (`SideInferenceWeights`).
public enum SidePackPrecision: String, Sendable {
    /// Float32 as trained: `--matmul exact` and `sgemm`, where tuned inference is held to the float64
    /// reference.
    case float32
    /// bfloat16 (nearest even), widened exactly to float32 in the kernel (`qst_small_gemv_bf16`): what
    /// `--matmul auto` uses, which already rounds the base's products. Half the bytes a decode step streams
    /// per side network and half a tenant's memory; each weight within 2⁻⁹ relative of the float32 one.
    case bfloat16

    /// The precision that goes with the base's matmul path: bfloat16 under `.kernelsAuto`, else float32.
    public init(for path: MatmulPath) { self = path == .kernelsAuto ? .bfloat16 : .float32 }

    var elementBytes: Int { self == .float32 ? 4 : 2 }
}

/// One side matrix as the decode loops read it: `W [outF, inF]` transposed and padded (`small_gemv.h`),
/// in float32 or bfloat16, inside a `SideInferenceWeights` buffer.
struct PackedMatrix {
    let wt: UnsafeRawPointer
    let inF, outF, ld: Int
    let precision: SidePackPrecision
    let path: Int32

    /// `y [n, outF] = x [n, inF] · Wᵀ (+ y when accumulate) (+ bias)`, every row on its own: a row gets the
    /// same bits whatever `n` (a prompt chunk or a decode step), on every vector path.
    @inline(__always)
    func apply(
        _ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, n: Int, bias: UnsafePointer<Float>? = nil,
        accumulate: Bool = false
    ) {
        let rc: Int32
        switch precision {
        case .float32:
            rc = qst_small_gemv(
                y, Int64(outF), x, Int64(inF), Int64(n), wt.assumingMemoryBound(to: Float.self), Int64(ld),
                Int64(inF), Int64(outF), bias, accumulate ? 1 : 0, path)
        case .bfloat16:
            rc = qst_small_gemv_bf16(
                y, Int64(outF), x, Int64(inF), Int64(n), wt.assumingMemoryBound(to: UInt16.self), Int64(ld),
                Int64(inF), Int64(outF), bias, accumulate ? 1 : 0, path)
        }
        precondition(rc == 0, "qst_small_gemv refused \(outF)×\(inF) (\(precision)) on path \(path)")
    }

    var bytes: Int { inF * ld * precision.elementBytes }
}

/// A side network's matrices packed once for inference, shared by every request that runs it.
///
/// Why: while decoding, a side network's own work is streaming its float32 weights (7.9 MB for SmolLM2 at
/// r = 8) through a few multiply-adds per weight; with several side networks in one step they do not stay
/// in cache, and OpenBLAS's `sgemv` on 36–192-wide matrices spread over the tensor buffer ran at about
/// half the memory speed (BENCHMARKS.md §16, session 6). Here each matrix is transposed (outputs along
/// vector lanes, no horizontal sums) and all of them sit in one 64-byte-aligned buffer in the order a
/// token visits them — layer i's downsampler, then block i — so a step reads one forward stream that the
/// kernel prefetches ahead. In float32 as trained (the results differ from the BLAS products only in
/// summation order) or in bfloat16 (`SidePackPrecision`).
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
    public let precision: SidePackPrecision
    private let storage: UnsafeMutableRawPointer

    public init(_ weights: SideWeights, precision: SidePackPrecision) {
        self.weights = weights
        self.precision = precision
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
        let elements = plan.reduce(0) { total, p in
            let s = shape(p.name)
            return total + s.inF * Int(qst_small_gemv_ld(Int64(s.outF)))
        }
        // Whole 2 MB pages, offered to the kernel as huge pages (one TLB entry per 2 MB of the stream).
        let page = 2 << 20, bytes = (max(1, elements) * precision.elementBytes + page - 1) / page * page
        storage = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: page)
        #if os(Linux)
            _ = madvise(storage, bytes, MADV_HUGEPAGE)
        #endif
        var offset = 0  // in elements
        var a = [PackedMatrix?](repeating: nil, count: L), b = a
        var blockMats = (0..<L).map {
            [PackedMatrix?](repeating: nil, count: family.packedBlockMatrices(layer: $0).count)
        }
        var upMat: PackedMatrix?
        for p in plan {
            let (outF, inF) = shape(p.name), ld = Int(qst_small_gemv_ld(Int64(outF)))
            let dst = storage + offset * precision.elementBytes, src = UnsafePointer(weights.value(p.name))
            switch precision {
            case .float32:
                qst_small_gemv_pack(dst.assumingMemoryBound(to: Float.self), src, Int64(inF), Int64(outF))
            case .bfloat16:
                qst_small_gemv_pack_bf16(dst.assumingMemoryBound(to: UInt16.self), src, Int64(inF), Int64(outF))
            }
            let m = PackedMatrix(
                wt: UnsafeRawPointer(dst), inF: inF, outF: outF, ld: ld, precision: precision, path: path)
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
        (downA + downB).compactMap { $0 }.reduce(0) { $0 + $1.bytes } + blocks.joined().reduce(0) { $0 + $1.bytes }
            + up.bytes
    }
}
