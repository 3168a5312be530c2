import QSTFormat
import QSTNN

/// What `FrozenModel` needs beyond the layers to run an OPT checkpoint: the embedding stem (tokens,
/// `project_in`, learned positions with OPT's offset of 2) and the tail (decoder `final_layer_norm`,
/// `project_out`). Also owns the layer weights and their scratch.
final class OPTParts {
    /// OPT stores position p (0-based, real tokens only) at row p + 2 of `embed_positions`.
    static let positionOffset = 2

    let config: ModelConfig
    let tokens: WeightTensor
    let positions: WeightTensor
    let projectIn: (any LinearWeights)?
    let projectOut: (any LinearWeights)?
    let finalNorm: OPTNorm?
    let head: WeightTensor
    let scratch: OPTScratch
    private let source: WeightSource
    private var layerCache: [Int: OPTLayerWeights] = [:]

    init(config c: ModelConfig, source s: WeightSource) throws {
        config = c
        source = s
        let p = OPTFamily.prefix, d = c.hiddenSize, e = c.headInputSize
        tokens = try s.tensor(p + "embed_tokens.weight")
        try tokens.expectShape([c.vocabSize, e], origin: s.origin)
        guard let maxPositions = c.maxPositionEmbeddings else {
            throw QSTError.file(
                s.origin, "config.json: max_position_embeddings missing (OPT learns one embedding per position)")
        }
        positions = try s.tensor(p + "embed_positions.weight")
        try positions.expectShape([maxPositions + Self.positionOffset, d], origin: s.origin)
        if e != d {
            projectIn = try WeightLoading.linear(s, p + "project_in", out: d, in: e, bias: false)
            projectOut = try WeightLoading.linear(s, p + "project_out", out: e, in: d, bias: false)
        } else {
            projectIn = nil
            projectOut = nil
        }
        finalNorm =
            c.optFinalNorm ? try OPTNorm.load(s, p + "final_layer_norm", count: d, affine: c.optAffineNorms) : nil
        if s.contains("lm_head.weight") {
            head = try s.tensor("lm_head.weight")
            try head.expectShape([c.vocabSize, e], origin: s.origin)
        } else if c.tieWordEmbeddings != false {
            head = tokens
        } else {
            throw QSTError.tensor(s.origin, "lm_head.weight", "missing while tie_word_embeddings is false")
        }
        scratch = OPTScratch(hidden: d, ffnWidth: c.intermediateSize)
    }

    /// Layer `i` (cached unless `cache` is false, when pages are being dropped).
    func layer(_ i: Int, cache: Bool) throws -> OPTLayerWeights {
        if let w = layerCache[i] { return w }
        let w = try OPTLayerWeights.load(layer: i, config: config, source: source)
        if cache { layerCache[i] = w }
        return w
    }

    func dropCachedLayers() { layerCache.removeAll() }

    /// `x [n, hidden]` = project_in(embed_tokens[id]) + embed_positions[position + 2] for the valid rows
    /// (padding rows stay zero).
    func embed(
        ids: [Int32], valid: [UInt8], positions pos: [Int32], into x: UnsafeMutablePointer<Float>,
        context: MatmulContext
    ) throws {
        let n = ids.count, d = config.hiddenSize, e = config.headInputSize
        let rows = positions.shape[0]
        for (r, p) in pos.enumerated() where valid[r] != 0 && Int(p) + Self.positionOffset >= rows {
            throw QSTError("opt: position \(p) is beyond max_position_embeddings \(rows - Self.positionOffset)")
        }
        if let projectIn {
            let t = FloatBuffer(count: n * e)
            for (r, id) in ids.enumerated() where valid[r] != 0 {
                tokens.decode(start: Int(id) * e, count: e, into: t.pointer + r * e)
            }
            projectIn.forward(out: x, x: t.constPointer, n: n, accumulate: false, context: context)
            for r in 0..<n where valid[r] == 0 { (x + r * d).update(repeating: 0, count: d) }
        } else {
            for (r, id) in ids.enumerated() where valid[r] != 0 {
                tokens.decode(start: Int(id) * d, count: d, into: x + r * d)
            }
        }
        let row = FloatBuffer(count: d)
        for r in 0..<n where valid[r] != 0 {
            positions.decode(start: (Int(pos[r]) + Self.positionOffset) * d, count: d, into: row.pointer)
            let xr = x + r * d
            for j in 0..<d { xr[j] += row[j] }
        }
    }

    /// The LM head's input `[n, word_embed_proj_dim]` from the last layer's output (which it may overwrite).
    func finish(_ x: FloatBuffer, n: Int, context: MatmulContext) -> FloatBuffer {
        finalNorm?.apply(out: x.pointer, x: x.constPointer, n: n, d: config.hiddenSize)
        guard let projectOut else { return x }
        let out = FloatBuffer(count: n * config.headInputSize)
        projectOut.forward(out: out.pointer, x: x.constPointer, n: n, accumulate: false, context: context)
        return out
    }
}
