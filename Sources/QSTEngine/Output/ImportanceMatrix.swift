import CBLAS
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
    /// tokens of each input channel's squared activation. With `gram`, also each distinct input's full Gram
    /// matrix `Σₜ xₜxₜᵀ` (for GPTQ: q/k/v share one, gate/up one; 4 per block).
    public static func collect(
        model: FrozenModel, tokens: [Int32], ctx: Int, textSHA256: String, gram: Bool = false,
        progress: (Progress) -> Void = { _ in }
    ) throws -> NF4Calibration {
        guard !model.config.isOPT else {
            throw QSTError.file(
                model.source.origin,
                "calibration reads LLaMA-layout blocks; model_type "
                    + "'\(model.config.modelType)' is not supported")
        }
        guard ctx >= 1 else { throw QSTError("calibration: window length \(ctx) must be at least 1") }
        guard !tokens.isEmpty else { throw QSTError("calibration: the text has no tokens") }
        let start = Date()
        let sink = ActivationSquares(gram: gram)
        model.blockTransform = { i, w in RecordingLinear.wrap(w, layer: i, sink: sink) }
        defer { model.blockTransform = nil }
        let windows = (tokens.count + ctx - 1) / ctx
        for wi in 0..<windows {
            let ids = Array(tokens[(wi * ctx)..<min(tokens.count, (wi + 1) * ctx)])
            _ = try model.forward(ids: ids, batch: 1, newTokens: ids.count)
            progress(Progress(windows: wi + 1, totalWindows: windows, tokens: min(tokens.count, (wi + 1) * ctx)))
        }
        return NF4Calibration(
            channels: sink.means(), textSHA256: textSHA256, tokens: tokens.count, ctx: ctx,
            seconds: Date().timeIntervalSince(start), grams: sink.symmetricGrams(), gramOf: sink.gramOf)
    }
}

/// Sums of squared inputs per channel, by linear; rows counted per linear. When asked, also the upper triangle
/// of `Σ xᵀx` for each distinct input (recorded by the first linear that reads it).
final class ActivationSquares {
    private var sums: [String: [Double]] = [:]
    private var rows: [String: Int] = [:]
    let collectsGram: Bool
    private var grams: [String: [Float]] = [:]
    /// Linear name → name of the linear whose Gram matrix it shares.
    private(set) var gramOf: [String: String] = [:]

    init(gram: Bool) { collectsGram = gram }

    func shareGram(_ name: String, with owner: String) { if collectsGram { gramOf[name] = owner } }

    /// `C += XᵀX` (upper triangle, row-major) for the `n × k` inputs of `name`.
    func addGram(_ name: String, x: UnsafePointer<Float>, rows n: Int, channels k: Int) {
        guard collectsGram, n > 0 else { return }
        var g = grams.removeValue(forKey: name) ?? [Float](repeating: 0, count: k * k)
        g.withUnsafeMutableBufferPointer {
            cblas_ssyrk(
                CblasRowMajor, CblasUpper, CblasTrans, Int32(k), Int32(n), 1, x, Int32(k), 1, $0.baseAddress!, Int32(k))
        }
        grams[name] = g
        gramOf[name] = name
    }

    func symmetricGrams() -> [String: [Float]] {
        var out = grams
        for (name, var g) in out {
            let k = Int(Double(g.count).squareRoot())
            for i in 0..<k { for j in 0..<i { g[i * k + j] = g[j * k + i] } }
            out[name] = g
        }
        return out
    }

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
    /// Whether this linear records its input's Gram matrix (the first of those sharing an input does).
    let recordsGram: Bool

    var inFeatures: Int { inner.inFeatures }
    var outFeatures: Int { inner.outFeatures }

    func forward(
        out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, n: Int, accumulate: Bool,
        context: MatmulContext
    ) {
        sink.add(name, x: x, rows: n, channels: inFeatures)
        if recordsGram { sink.addGram(name, x: x, rows: n, channels: inFeatures) }
        inner.forward(out: out, x: x, n: n, accumulate: accumulate, context: context)
    }

    /// Block `layer`'s linears wrapped under their Hugging Face tensor names (the LLaMA layout's).
    static func wrap(_ w: DecoderBlockWeights, layer i: Int, sink: ActivationSquares) -> DecoderBlockWeights {
        let p = "model.layers.\(i)."
        // q/k/v read the same normed input, gate/up too: one Gram matrix each, recorded by q and gate.
        func r(_ l: any LinearWeights, _ n: String, gramFrom owner: String? = nil) -> any LinearWeights {
            if let owner { sink.shareGram(p + n + ".weight", with: p + owner + ".weight") }
            return RecordingLinear(inner: l, name: p + n + ".weight", sink: sink, recordsGram: owner == nil)
        }
        var out = w
        out.q = r(w.q, "self_attn.q_proj"); out.k = r(w.k, "self_attn.k_proj", gramFrom: "self_attn.q_proj")
        out.v = r(w.v, "self_attn.v_proj", gramFrom: "self_attn.q_proj")
        out.o = r(w.o, "self_attn.o_proj")
        out.gate = r(w.gate, "mlp.gate_proj"); out.up = r(w.up, "mlp.up_proj", gramFrom: "mlp.gate_proj")
        out.down = r(w.down, "mlp.down_proj")
        return out
    }
}
