import Foundation
import QSTFormat
import QSTNN

/// How much each input channel of each linear matters: the mean squared activation entering it over a
/// calibration text (what llama.cpp calls an importance matrix). The NF4 scale search weights each weight's
/// squared error by its input channel's value, which is the expected squared error of the layer's output.
public enum ImportanceMatrix {
    public struct Progress: Sendable { public var windows: Int; public var totalWindows: Int; public var tokens: Int }

    /// Runs `tokens` through `model` in consecutive windows of `ctx` tokens (batch 1, no padding) and returns
    /// the calibration: for every block linear (`model.layers.i.self_attn.q_proj.weight`, …) the mean over all
    /// tokens of each input channel's squared activation.
    public static func collect(model: FrozenModel, tokens: [Int32], ctx: Int, textSHA256: String,
                               progress: (Progress) -> Void = { _ in }) throws -> NF4Calibration {
        guard !model.config.isOPT else {
            throw QSTError.file(model.source.origin, "calibration reads LLaMA-layout blocks; model_type "
                                + "'\(model.config.modelType)' is not supported")
        }
        guard ctx >= 1 else { throw QSTError("calibration: window length \(ctx) must be at least 1") }
        guard !tokens.isEmpty else { throw QSTError("calibration: the text has no tokens") }
        let start = Date()
        let sink = ActivationSquares()
        model.blockTransform = { i, w in RecordingLinear.wrap(w, layer: i, sink: sink) }
        defer { model.blockTransform = nil }
        let windows = (tokens.count + ctx - 1) / ctx
        for wi in 0..<windows {
            let ids = Array(tokens[(wi * ctx)..<min(tokens.count, (wi + 1) * ctx)])
            _ = try model.forward(ids: ids, batch: 1, newTokens: ids.count)
            progress(Progress(windows: wi + 1, totalWindows: windows, tokens: min(tokens.count, (wi + 1) * ctx)))
        }
        return NF4Calibration(channels: sink.means(), textSHA256: textSHA256, tokens: tokens.count, ctx: ctx,
                              seconds: Date().timeIntervalSince(start))
    }
}

/// Sums of squared inputs per channel, by linear; rows counted per linear.
final class ActivationSquares {
    private var sums: [String: [Double]] = [:]
    private var rows: [String: Int] = [:]

    func add(_ name: String, x: UnsafePointer<Float>, rows n: Int, channels k: Int) {
        var s = sums[name] ?? [Double](repeating: 0, count: k)
        s.withUnsafeMutableBufferPointer { acc in
            for r in 0..<n {
                let row = x + r * k
                for j in 0..<k { let v = Double(row[j]); acc[j] += v * v }
            }
        }
        sums[name] = s
        rows[name, default: 0] += n
    }

    func means() -> [String: [Float]] {
        sums.reduce(into: [:]) { out, e in
            let n = Double(max(1, rows[e.key] ?? 1))
            out[e.key] = e.value.map { Float($0 / n) }
        }
    }
}

/// A linear that records the squares of its inputs, then runs the wrapped one unchanged.
struct RecordingLinear: LinearWeights {
    let inner: any LinearWeights
    let name: String
    let sink: ActivationSquares

    var inFeatures: Int { inner.inFeatures }
    var outFeatures: Int { inner.outFeatures }

    func forward(out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, n: Int, accumulate: Bool,
                 context: MatmulContext) {
        sink.add(name, x: x, rows: n, channels: inFeatures)
        inner.forward(out: out, x: x, n: n, accumulate: accumulate, context: context)
    }

    /// Block `layer`'s linears wrapped under their Hugging Face tensor names (the LLaMA layout's).
    static func wrap(_ w: DecoderBlockWeights, layer i: Int, sink: ActivationSquares) -> DecoderBlockWeights {
        let p = "model.layers.\(i)."
        func r(_ l: any LinearWeights, _ n: String) -> any LinearWeights { RecordingLinear(inner: l, name: p + n + ".weight", sink: sink) }
        var out = w
        out.q = r(w.q, "self_attn.q_proj"); out.k = r(w.k, "self_attn.k_proj"); out.v = r(w.v, "self_attn.v_proj")
        out.o = r(w.o, "self_attn.o_proj")
        out.gate = r(w.gate, "mlp.gate_proj"); out.up = r(w.up, "mlp.up_proj"); out.down = r(w.down, "mlp.down_proj")
        return out
    }
}
