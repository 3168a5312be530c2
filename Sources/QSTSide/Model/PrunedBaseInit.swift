import Foundation
import QSTEngine
import QSTNN

/// `qst-init-side --init base-pruned` (Formats/SIDE.md §2.1): the side blocks start as the base model's own
/// layers, structurally pruned to the side width as Ladder Side-Tuning (Sung et al. 2022) initialises its
/// side network, instead of at random. What is kept is chosen by the squared L2 norm of the dequantized base
/// weights (no data needed); every kept value is copied exactly. `upsample` stays zero and the head mix
/// residual, so the tuned model still starts as the base model.
public enum PrunedBaseInit {
    /// What is kept, as indices into the base's tensors. Every list is in side order.
    public struct Selection: Sendable, Equatable {
        /// The `w` kept residual channels of `d`, ascending: one set for every block, `norm_side` and the
        /// downsamplers, because the side stream carries the same features from block to block.
        public var channels: [Int]
        public var layers: [Layer]
    }

    /// One base layer's kept attention dimensions and MLP neurons.
    public struct Layer: Sendable, Equatable {
        /// Per key/value group g (`K` of them): the base head-local dimension each of the side head's `hd`
        /// query/key dimensions comes from. RoPE pairs stay pairs: side dims `k` and `k + hd/2` take base dims
        /// `p` and `p + hd_base/2` of one pair `p`, one pair per frequency band (`pairBands`).
        public var queryKey: [[Int]]
        /// Per group: the base head-local dimension each of the side head's `hd` value dimensions comes from.
        public var value: [[Int]]
        /// The `f` kept MLP neurons of `I`, ascending.
        public var mlp: [Int]
    }

    /// The `k` largest of `importance` (ties: the lower index first), returned ascending.
    public static func top(_ k: Int, of importance: [Double]) -> [Int] {
        let order = importance.indices.sorted {
            importance[$0] != importance[$1] ? importance[$0] > importance[$1] : $0 < $1
        }
        return Array(order.prefix(k)).sorted()
    }

    /// Side RoPE pair `k` (of `m`) chooses among base pairs `[⌊k·P/m⌋, ⌊(k+1)·P/m⌋)` (of `P`): a band of
    /// frequencies from the side pair's own, `θ^(−2k/hd)`, down to the next side pair's, so a kept pair keeps
    /// (nearly; exactly at a band's first pair) the rotation speed it had in the base.
    public static func pairBands(sidePairs m: Int, basePairs P: Int) -> [Range<Int>] {
        (0..<m).map { k in (k * P / m)..<((k + 1) * P / m) }
    }

    /// The base's tensors of layer `i` (LLaMA family), dequantized.
    struct BaseLayer {
        let q, k, v, o, gate, up, down, inNorm, postNorm: FloatBuffer
    }

    /// The base's dimensions as its tensors give them.
    struct Dims {
        let d, heads, kvHeads, baseHeadDim, ffn: Int
    }

    static func name(_ i: Int, _ suffix: String) -> String { "model.layers.\(i).\(suffix)" }

    static func loadLayer(_ i: Int, source: WeightSource, dims: Dims) throws -> BaseLayer {
        let d = dims.d, q = dims.heads * dims.baseHeadDim, kv = dims.kvHeads * dims.baseHeadDim, f = dims.ffn
        func load(_ suffix: String, _ shape: [Int]) throws -> FloatBuffer {
            let t = try source.tensor(name(i, suffix))
            try t.expectShape(shape, origin: source.origin)
            return t.floats()
        }
        return BaseLayer(
            q: try load("self_attn.q_proj.weight", [q, d]), k: try load("self_attn.k_proj.weight", [kv, d]),
            v: try load("self_attn.v_proj.weight", [kv, d]), o: try load("self_attn.o_proj.weight", [d, q]),
            gate: try load("mlp.gate_proj.weight", [f, d]), up: try load("mlp.up_proj.weight", [f, d]),
            down: try load("mlp.down_proj.weight", [d, f]), inNorm: try load("input_layernorm.weight", [d]),
            postNorm: try load("post_attention_layernorm.weight", [d]))
    }

    /// Squared L2 norm of row `r` of a row-major `[*, cols]` matrix.
    static func rowNorm2(_ m: FloatBuffer, _ r: Int, cols: Int) -> Double {
        var s = 0.0
        for c in 0..<cols { let x = Double(m.pointer[r * cols + c]); s += x * x }
        return s
    }

    /// Squared L2 norm of column `c` of a row-major `[rows, cols]` matrix.
    static func columnNorm2(_ m: FloatBuffer, _ c: Int, rows: Int, cols: Int) -> Double {
        var s = 0.0
        for r in 0..<rows { let x = Double(m.pointer[r * cols + c]); s += x * x }
        return s
    }

    static func dims(config c: SideConfig, source: WeightSource) throws -> Dims {
        guard !c.base.isOPT else {
            throw QSTError("--init base-pruned: implemented for LLaMA-family bases only, not OPT")
        }
        let q0 = try source.tensor(name(0, "self_attn.q_proj.weight"))
        let f0 = try source.tensor(name(0, "mlp.gate_proj.weight"))
        let H = c.heads, baseHeadDim = (q0.shape.first ?? 0) / H
        guard q0.shape.count == 2, baseHeadDim * H == q0.shape[0], baseHeadDim % 2 == 0,
            c.headDim <= baseHeadDim, f0.shape.count == 2
        else {
            throw QSTError.tensor(
                source.origin, q0.name,
                "shape \(q0.shape) gives no even base head size of at least the side's \(c.headDim) for \(H) heads")
        }
        return Dims(
            d: c.base.hiddenSize, heads: H, kvHeads: c.kvHeads, baseHeadDim: baseHeadDim, ffn: f0.shape[0])
    }

    /// Chooses what to keep from the base (`source`) for a side network of `config` (Formats/SIDE.md §2.1).
    public static func select(config c: SideConfig, source: WeightSource) throws -> Selection {
        let dm = try dims(config: c, source: source)
        let d = dm.d, H = dm.heads, K = dm.kvHeads, bhd = dm.baseHeadDim, f = dm.ffn, hd = c.headDim
        let group = H / K, qw = H * bhd, kvw = K * bhd
        var channel = [Double](repeating: 0, count: d)
        var layers: [Layer] = []
        for i in 0..<c.base.layerCount {
            let b = try loadLayer(i, source: source, dims: dm)
            // Residual channel c: the norms of every column that reads it, scaled by the RMSNorm gain in front
            // (part of the same linear map). Not the rows that write it: those single out the base's few
            // massive-activation channels (2–5× the median write norm in SmolLM2, read through small gains),
            // which would dominate the side's 72-channel RMSNorm; counting writes too trained worse
            // (BENCHMARKS.md §15, session 7).
            for ch in 0..<d {
                let g1 = Double(b.inNorm.pointer[ch]), g2 = Double(b.postNorm.pointer[ch])
                let reads1 =
                    columnNorm2(b.q, ch, rows: qw, cols: d) + columnNorm2(b.k, ch, rows: kvw, cols: d)
                    + columnNorm2(b.v, ch, rows: kvw, cols: d)
                let reads2 = columnNorm2(b.gate, ch, rows: f, cols: d) + columnNorm2(b.up, ch, rows: f, cols: d)
                channel[ch] += g1 * g1 * reads1 + g2 * g2 * reads2
            }
            var queryKey: [[Int]] = [], value: [[Int]] = []
            let bands = pairBands(sidePairs: hd / 2, basePairs: bhd / 2)
            for g in 0..<K {
                let heads = (g * group)..<((g + 1) * group)
                // Pair p of group g: both rows of the pair in every query head of the group and in its key head.
                func pairImportance(_ p: Int) -> Double {
                    var s = 0.0
                    for row in [p, p + bhd / 2] {
                        for h in heads { s += rowNorm2(b.q, h * bhd + row, cols: d) }
                        s += rowNorm2(b.k, g * bhd + row, cols: d)
                    }
                    return s
                }
                let pairScores = (0..<(bhd / 2)).map(pairImportance)
                let pairs = bands.map { band in band.lowerBound + top(1, of: band.map { pairScores[$0] })[0] }
                queryKey.append(pairs + pairs.map { $0 + bhd / 2 })
                // Value dim j: its value row and the output-projection column of every query head reading it.
                let valueImportance = (0..<bhd).map { j in
                    heads.reduce(rowNorm2(b.v, g * bhd + j, cols: d)) {
                        $0 + columnNorm2(b.o, $1 * bhd + j, rows: d, cols: qw)
                    }
                }
                value.append(top(hd, of: valueImportance))
            }
            let neuron = (0..<f).map { j in
                rowNorm2(b.gate, j, cols: d) + rowNorm2(b.up, j, cols: d) + columnNorm2(b.down, j, rows: d, cols: f)
            }
            layers.append(Layer(queryKey: queryKey, value: value, mlp: top(c.intermediate, of: neuron)))
        }
        return Selection(channels: top(c.width, of: channel), layers: layers)
    }

    /// `select` then `apply` with the base at `modelPath` (a `.qst4` container or a safetensors folder).
    public static func initialize(_ weights: SideWeights, modelPath: String) throws {
        guard !modelPath.hasSuffix(".json") else {
            throw QSTError.file(modelPath, "--init base-pruned needs the base's weights, not only its config.json")
        }
        let source = try openWeightSource(path: modelPath)
        try apply(try select(config: weights.config, source: source), source: source, to: weights)
    }

    /// Overwrites the blocks, `norm_side` and (linear) downsamplers of `weights` with the kept base values;
    /// everything else (gates, adapter or pooling downsamplers, `upsample`, `lm_head_z`, a head) keeps its
    /// initialisation.
    public static func apply(_ sel: Selection, source: WeightSource, to weights: SideWeights) throws {
        let c = weights.config
        let dm = try dims(config: c, source: source)
        let d = dm.d, H = dm.heads, K = dm.kvHeads, bhd = dm.baseHeadDim, f = dm.ffn, hd = c.headDim
        let group = H / K, qw = H * bhd, w = c.width, fs = c.intermediate
        let S = sel.channels
        precondition(S.count == w && sel.layers.count == c.base.layerCount, "selection of another configuration")
        for (i, kept) in sel.layers.enumerated() {
            let b = try loadLayer(i, source: source, dims: dm)
            let n = SideBlock.Names(i)
            let q = weights.value(n.q), k = weights.value(n.k), v = weights.value(n.v), o = weights.value(n.o)
            for h in 0..<H {
                let g = h / group
                for j in 0..<hd {
                    let qRow = h * bhd + kept.queryKey[g][j], vCol = h * bhd + kept.value[g][j]
                    for x in 0..<w { q[(h * hd + j) * w + x] = b.q.pointer[qRow * d + S[x]] }
                    for x in 0..<w { o[x * (H * hd) + h * hd + j] = b.o.pointer[S[x] * qw + vCol] }
                }
            }
            for g in 0..<K {
                for j in 0..<hd {
                    let kRow = g * bhd + kept.queryKey[g][j], vRow = g * bhd + kept.value[g][j]
                    for x in 0..<w {
                        k[(g * hd + j) * w + x] = b.k.pointer[kRow * d + S[x]]
                        v[(g * hd + j) * w + x] = b.v.pointer[vRow * d + S[x]]
                    }
                }
            }
            let gate = weights.value(n.gate), up = weights.value(n.up), down = weights.value(n.down)
            for (j, m) in kept.mlp.enumerated() {
                for x in 0..<w {
                    gate[j * w + x] = b.gate.pointer[m * d + S[x]]
                    up[j * w + x] = b.up.pointer[m * d + S[x]]
                    down[x * fs + j] = b.down.pointer[S[x] * f + m]
                }
            }
            let inNorm = weights.value(n.inNorm), postNorm = weights.value(n.postNorm)
            for x in 0..<w {
                inNorm[x] = b.inNorm.pointer[S[x]]
                postNorm[x] = b.postNorm.pointer[S[x]]
            }
            // The linear downsampler starts as the projection onto the kept channels: block i reads the
            // pruned base state.
            if c.downsample == .linear {
                let p = weights.value(c.downsamplePrefix(i) + "weight")
                p.update(repeating: 0, count: w * d)
                for x in 0..<w { p[x * d + S[x]] = 1 }
            }
        }
        let finalNorm = try source.tensor("model.norm.weight")
        try finalNorm.expectShape([d], origin: source.origin)
        let normValues = finalNorm.floats(), sideNorm = weights.value("model.norm_qst.weight")
        for x in 0..<w { sideNorm[x] = normValues.pointer[S[x]] }
    }
}
