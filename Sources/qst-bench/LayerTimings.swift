import ArgumentParser
import Foundation
import QSTNN

/// Timings of QSTNN's layers at realistic sizes, one run each; prints numbers only (Scripts/bench-layers
/// runs it).
struct LayerTimings: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "layers",
        abstract: "One timed run of attention, RMSNorm, SwiGLU, dropout and chunked cross-entropy at realistic sizes.",
        discussion:
            "Attention B2 T512 8/2 heads of 64; RMSNorm and SwiGLU 1024x2048; dropout 16x18x576 with per-example streams, 30 calls; cross-entropy n512 d576 V49152 (the SmolLM2-135M head).\n\nExample: qst-bench layers"
    )

    func time(_ label: String, _ body: () throws -> Void) rethrows {
        let t0 = DispatchTime.now().uptimeNanoseconds
        try body()
        let ms = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
        print("BENCH \(label): \(String(format: "%.1f", ms)) ms")
    }

    func run() throws {
        var rng = SplitMix64(seed: 1)
        func randomBuffer(_ n: Int, std: Float = 1) -> FloatBuffer {
            let b = FloatBuffer(count: n); VectorOps.fillGaussian(b.pointer, count: n, std: std, rng: &rng); return b
        }
        // Attention: B=2, T=512, 8 heads of 64 with 2 kv heads.
        let shape = Attention.Shape(batch: 2, seqLen: 512, nHeads: 8, nKVHeads: 2, headDim: 64)
        let nq = 2 * 512 * 8 * 64, nk = 2 * 512 * 2 * 64
        let q = randomBuffer(nq), k = randomBuffer(nk), v = randomBuffer(nk), out = FloatBuffer(count: nq)
        let probs = FloatBuffer(count: shape.probsCount)
        let dq = FloatBuffer(count: nq), dk = FloatBuffer(count: nk), dv = FloatBuffer(count: nk)
        time("attention fwd B2 T512 H8/2 hd64") {
            Attention.forward(
                out: out.pointer, probs: probs.pointer, q: q.pointer, k: k.pointer, v: v.pointer,
                keyMask: nil, shape: shape)
        }
        time("attention bwd B2 T512 H8/2 hd64") {
            Attention.backward(
                dq: dq.pointer, dk: dk.pointer, dv: dv.pointer, dout: out.pointer, q: q.pointer,
                k: k.pointer, v: v.pointer, probs: probs.pointer, shape: shape)
        }
        // Norm and SwiGLU over 1024 tokens.
        let x = randomBuffer(1024 * 2048), w = randomBuffer(2048), y = FloatBuffer(count: 1024 * 2048)
        let rstd = FloatBuffer(count: 1024), dx = FloatBuffer(count: 1024 * 2048), dw = FloatBuffer(count: 2048)
        time("rmsnorm fwd 1024x2048") {
            RMSNorm.forward(
                out: y.pointer, rstd: rstd.pointer, x: x.pointer, weight: w.pointer, n: 1024, d: 2048, eps: 1e-5)
        }
        time("rmsnorm bwd 1024x2048") {
            RMSNorm.backward(
                dx: dx.pointer, dweight: dw.pointer, dout: y.pointer, x: x.pointer, weight: w.pointer,
                rstd: rstd.pointer, n: 1024, d: 2048)
        }
        time("swiglu fwd 1024x2048") {
            SwiGLU.forward(out: y.pointer, gate: x.pointer, up: dx.pointer, count: 1024 * 2048)
        }
        // Dropout with per-example streams, as a training step of 16 SST-2 sentences (~18 tokens) draws it over
        // its 576-wide inputs, 30 calls.
        let dn = 16 * 18 * 576
        let din = randomBuffer(dn), dout = FloatBuffer(count: dn), dmask = Buffer<UInt8>(count: dn)
        time("dropout fwd 16x18x576 per-example streams, 30 calls") {
            for c in 0..<30 {
                Dropout.forward(
                    out: dout.pointer, mask: dmask.pointer, x: din.pointer, width: 576, p: 0.1,
                    streams: DropoutStreams(keys: (0..<16).map { UInt64($0) }, seqLen: 18, call: c))
            }
        }
        // Cross-entropy: 512 labelled positions, d=576, V=49152 (SmolLM2-135M head).
        let n = 512, d = 576, V = 49152
        let hidden = randomBuffer(n * d), head = randomBuffer(V * d, std: 0.05), dh = FloatBuffer(count: n * d)
        let labels = Buffer<Int32>((0..<n).map { Int32(($0 * 7919) % V) })
        var result: ChunkedCrossEntropy.Result?
        try time("cross-entropy fwd+bwd n512 d576 V49152") {
            result = try ChunkedCrossEntropy.lossAndGradient(
                hidden: hidden.pointer, labels: labels.pointer, n: n,
                head: F32HeadRows(weight: head.pointer, vocabSize: V, dim: d), dHidden: dh.pointer)
        }
        print("BENCH loss \(result?.mean ?? .nan)")
        withExtendedLifetime((q, k, v, out, probs, dq, dk, dv, x, w, y, rstd, dx, dw, din, dout, dmask)) {}
        withExtendedLifetime((hidden, head, dh, labels)) {}
    }
}
