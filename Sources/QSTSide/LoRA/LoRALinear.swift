import CBLAS
import Foundation
import QSTCore
import QSTEngine
import QSTFormat
import QSTNN

/// A frozen base projection seen from backward: only the data gradient `dx += dy · W` flows through it
/// (no weight gradient). NF4/BF16 weights are decoded tile by tile to F32 and multiplied with
/// `cblas_sgemm` (NoTrans·NoTrans), so nothing larger than one tile is ever dequantized.
struct FrozenMatrix {
    enum Storage { case dense(UnsafePointer<Float>), decoded(WeightTensor) }
    let storage: Storage
    let inF: Int, outF: Int
    /// The forward side (bias included), as the engine runs it.
    let linear: any LinearWeights

    init(_ linear: any LinearWeights, origin: String) throws {
        self.linear = linear
        inF = linear.inFeatures; outF = linear.outFeatures
        if let d = linear as? DenseLinear {
            storage = .dense(d.weight)
        } else if let q = linear as? QuantizedLinear {
            storage = .decoded(q.tensor)
        } else {
            throw QSTError("\(origin): LoRA backward cannot read weights of type \(type(of: linear))")
        }
    }

    func forward(
        out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, n: Int, accumulate: Bool,
        context: MatmulContext
    ) {
        linear.forward(out: out, x: x, n: n, accumulate: accumulate, context: context)
    }

    /// `dx [n, inF] += dy [n, outF] · W [outF, inF]`. `tile` holds at least `tileRows(…)·inF` floats.
    func backwardData(dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, n: Int, tile: FloatBuffer) {
        guard n > 0 else { return }
        switch storage {
        case .dense(let w):
            cblas_sgemm(
                CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n), Int32(inF), Int32(outF),
                1, dy, Int32(outF), w, Int32(inF), 1, dx, Int32(inF))
        case .decoded(let t):
            let rowsPerTile = max(1, min(outF, tile.count / max(1, inF)))
            let k = inF, ts = SendablePointer(tile.pointer)
            var r0 = 0
            while r0 < outF {
                let rn = min(rowsPerTile, outF - r0), base = r0
                // Decoding on our workers, then the product on BLAS's: never both at once.
                Parallel.forRanges(rn, minChunk: 8) { a, b in
                    t.decode(start: (base + a) * k, count: (b - a) * k, into: ts.base + a * k)
                }
                cblas_sgemm(
                    CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n), Int32(k), Int32(rn),
                    1, dy + r0, Int32(outF), tile.pointer, Int32(k), 1, dx, Int32(k))
                r0 += rn
            }
        }
    }
}

/// The LoRA branch of one projection: `y += s · (dropout(x) · Aᵀ) · Bᵀ`, `s = alpha / r`
/// (PEFT's `lora_B(lora_A(dropout(x))) * scaling`). Dropout masks are never stored: they are a pure
/// function of the SplitMix64 state saved at forward time (see `QSTNN.Dropout`), so backward and
/// gradient checkpointing regenerate them.
enum LoRABranch {
    struct Scratch {
        let xd: FloatBuffer  // dropped-out input [n, in]
        let mask: Buffer<UInt8>  // [n, in]
        let dxd: FloatBuffer  // gradient w.r.t. the dropped-out input [n, in]
        let du: FloatBuffer  // [n, r]
        init(rows n: Int, maxIn: Int, r: Int) {
            xd = FloatBuffer(count: n * maxIn); mask = Buffer<UInt8>(count: n * maxIn)
            dxd = FloatBuffer(count: n * maxIn); du = FloatBuffer(count: n * r)
        }
    }

    /// Where a projection's dropout mask comes from: a start state of one stream, or per-example streams
    /// (`DropoutStreams`, the trainer's: the same mask whichever process computes an example).
    enum DropoutDraw { case stream(UInt64), examples(DropoutStreams) }

    /// The input the branch multiplies: `x` itself without dropout, else the dropped-out copy in scratch.
    static func droppedInput(
        x: UnsafePointer<Float>, count: Int, width: Int, p: Float, draw: DropoutDraw?,
        scratch: Scratch
    ) -> UnsafePointer<Float> {
        guard let draw, p > 0 else { return x }
        switch draw {
        case .stream(let start):
            var rng = SplitMix64(seed: start)
            Dropout.forward(out: scratch.xd.pointer, mask: scratch.mask.pointer, x: x, count: count, p: p, rng: &rng)
        case .examples(let streams):
            Dropout.forward(
                out: scratch.xd.pointer, mask: scratch.mask.pointer, x: x, width: width, p: p, streams: streams)
        }
        return scratch.xd.constPointer
    }

    /// Adds the branch to `out [n, outF]` and leaves `u = dropout(x)·Aᵀ [n, r]` in `u`.
    /// `draw` nil means no dropout (evaluation).
    static func forward(
        out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, n: Int, pair: LoRAPair,
        weights W: LoRAWeights, draw: DropoutDraw?, u: UnsafeMutablePointer<Float>, scratch: Scratch
    ) {
        let r = W.config.r, inF = pair.inF, outF = pair.outF
        let xin = droppedInput(x: x, count: n * inF, width: inF, p: W.config.dropout, draw: draw, scratch: scratch)
        Linear.forward(
            out: u, x: xin, weight: W.values.pointer + pair.offsetA, bias: nil, n: n,
            inFeatures: inF, outFeatures: r)
        cblas_sgemm(
            CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), Int32(outF), Int32(r),
            W.config.scaling, u, Int32(r), W.values.pointer + pair.offsetB, Int32(r), 1, out, Int32(outF))
    }

    /// Accumulates `dA`, `dB` into `W.grads` and the branch's share of `dx` (`+=`), given `dy [n, outF]`
    /// and the `u` forward kept.
    static func backward(
        dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, x: UnsafePointer<Float>, n: Int,
        pair: LoRAPair, weights W: LoRAWeights, draw: DropoutDraw?, u: UnsafePointer<Float>,
        scratch: Scratch
    ) {
        let r = W.config.r, inF = pair.inF, outF = pair.outF, s = W.config.scaling
        let A = W.values.pointer + pair.offsetA, B = W.values.pointer + pair.offsetB
        // dB [outF, r] += s · dyᵀ · u ;  du [n, r] = s · dy · B
        cblas_sgemm(
            CblasRowMajor, CblasTrans, CblasNoTrans, Int32(outF), Int32(r), Int32(n),
            s, dy, Int32(outF), u, Int32(r), 1, W.grads.pointer + pair.offsetB, Int32(r))
        cblas_sgemm(
            CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n), Int32(r), Int32(outF),
            s, dy, Int32(outF), B, Int32(r), 0, scratch.du.pointer, Int32(r))
        let p = W.config.dropout
        let xin = droppedInput(x: x, count: n * inF, width: inF, p: p, draw: draw, scratch: scratch)
        // dA [r, inF] += duᵀ · dropout(x)
        cblas_sgemm(
            CblasRowMajor, CblasTrans, CblasNoTrans, Int32(r), Int32(inF), Int32(n),
            1, scratch.du.pointer, Int32(r), xin, Int32(inF), 1, W.grads.pointer + pair.offsetA, Int32(inF))
        if draw != nil, p > 0 {
            cblas_sgemm(
                CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n), Int32(inF), Int32(r),
                1, scratch.du.pointer, Int32(r), A, Int32(inF), 0, scratch.dxd.pointer, Int32(inF))
            Dropout.backward(dx: dx, dout: scratch.dxd.pointer, mask: scratch.mask.pointer, count: n * inF, p: p)
        } else {
            cblas_sgemm(
                CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n), Int32(inF), Int32(r),
                1, scratch.du.pointer, Int32(r), A, Int32(inF), 1, dx, Int32(inF))
        }
    }
}
