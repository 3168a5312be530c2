import Foundation
import QSTEngine
import QSTNN
import XCTest
import QSTTestSupport
@testable import QSTSide

/// `qst-init-side --init base-pruned` (Formats/SIDE.md §2.1): what is kept follows the documented importance
/// (squared L2 norms of the dequantized base weights), and every kept value is the base's, bit for bit.
final class PrunedBaseInitTests: XCTestCase {
    /// The base's layer-`i` tensor `suffix` dequantized, with its shape.
    private func matrix(_ source: WeightSource, _ name: String) throws -> (values: [Float], shape: [Int]) {
        let t = try source.tensor(name)
        let b = t.floats()
        return ((0..<t.count).map { b[$0] }, t.shape)
    }

    /// Squared norms of every row (`byRow`) or column of a row-major matrix, in Double.
    private func norms2(_ m: (values: [Float], shape: [Int]), byRow: Bool, scale: [Float]? = nil) -> [Double] {
        let rows = m.shape[0], cols = m.shape[1]
        var out = [Double](repeating: 0, count: byRow ? rows : cols)
        for r in 0..<rows {
            for c in 0..<cols {
                let x = Double(m.values[r * cols + c]) * Double(scale?[c] ?? 1)
                out[byRow ? r : c] += x * x
            }
        }
        return out
    }

    /// Indices of the `k` largest values (first index on ties), ascending.
    private func largest(_ k: Int, _ v: [Double]) -> [Int] {
        var kept: [Int] = []
        var left = Set(v.indices)
        for _ in 0..<k {
            let best = left.min { v[$0] > v[$1] || (v[$0] == v[$1] && $0 < $1) }!
            kept.append(best)
            left.remove(best)
        }
        return kept.sorted()
    }

    func testKeptChannelsFollowTheImportanceAndValuesAreTheBaseRowsAndColumns() throws {
        let base = try FrozenModel(
            path: try ExportFixtures.tinyContainer(), options: EngineOptions(matmulPath: .dequantizeSGEMM))
        let source = base.source
        let shape = try BaseShape.parse(configJSON: try source.configJSON(), context: "test")
        // tiny-llama: d 64, 4 heads of 16, 2 kv heads, MLP 128; r 2 → width 32, side heads of 8, MLP 64.
        let config = SideConfig(base: shape, r: 2, downsample: .linear, seed: 3, headMix: .residual)
        XCTAssertEqual([config.width, config.headDim, config.intermediate], [32, 8, 64])
        let side = try SideWeights(config: config)
        side.initialize(seed: 3)
        let sel = try PrunedBaseInit.select(config: config, source: source)
        try PrunedBaseInit.apply(sel, source: source, to: side)

        let d = 64, H = 4, K = 2, bhd = 16, hd = 8, w = 32, f = 128, fs = 64, L = shape.layerCount
        // Residual channels: Σ over layers of the reading columns (times the RMSNorm gain before them).
        var channel = [Double](repeating: 0, count: d)
        var layers: [(q: [Float], k: [Float], v: [Float], o: [Float], g: [Float], u: [Float], dn: [Float])] = []
        var norms: [(in: [Float], post: [Float])] = []
        for i in 0..<L {
            func m(_ s: String) throws -> (values: [Float], shape: [Int]) {
                try matrix(source, "model.layers.\(i).\(s).weight")
            }
            let q = try m("self_attn.q_proj"), k = try m("self_attn.k_proj"), v = try m("self_attn.v_proj")
            let o = try m("self_attn.o_proj"), g = try m("mlp.gate_proj"), u = try m("mlp.up_proj")
            let dn = try m("mlp.down_proj")
            let n1 = try m("input_layernorm").values, n2 = try m("post_attention_layernorm").values
            let parts = [
                norms2(q, byRow: false, scale: n1), norms2(k, byRow: false, scale: n1),
                norms2(v, byRow: false, scale: n1), norms2(g, byRow: false, scale: n2),
                norms2(u, byRow: false, scale: n2),
            ]
            for c in 0..<d { channel[c] += parts.reduce(0) { $0 + $1[c] } }
            layers.append((q.values, k.values, v.values, o.values, g.values, u.values, dn.values))
            norms.append((n1, n2))

            // MLP neurons: gate and up rows, down column.
            let neuron = zip(zip(norms2(g, byRow: true), norms2(u, byRow: true)), norms2(dn, byRow: false)).map {
                $0.0 + $0.1 + $1
            }
            XCTAssertEqual(sel.layers[i].mlp, largest(fs, neuron), "layer \(i) MLP neurons")
            let qRows = norms2(q, byRow: true), kRows = norms2(k, byRow: true), vRows = norms2(v, byRow: true)
            let oCols = norms2(o, byRow: false)
            for grp in 0..<K {
                let heads = [2 * grp, 2 * grp + 1]
                // RoPE pairs p and p + 8; side pair j picks the strongest base pair of band [2j, 2j + 2).
                let pair = (0..<8).map { p in
                    [p, p + 8].reduce(0.0) { s, row in
                        s + kRows[grp * bhd + row] + heads.reduce(0.0) { $0 + qRows[$1 * bhd + row] }
                    }
                }
                let pairs = (0..<4).map { j in pair[2 * j] >= pair[2 * j + 1] ? 2 * j : 2 * j + 1 }
                XCTAssertEqual(sel.layers[i].queryKey[grp], pairs + pairs.map { $0 + 8 }, "layer \(i) group \(grp)")
                let value = (0..<bhd).map { j in vRows[grp * bhd + j] + heads.reduce(0.0) { $0 + oCols[$1 * bhd + j] } }
                XCTAssertEqual(sel.layers[i].value[grp], largest(hd, value), "layer \(i) group \(grp) values")
            }
        }
        XCTAssertEqual(sel.channels, largest(w, channel))
        let kept = Set(sel.channels)
        let weakestKept = sel.channels.map { channel[$0] }.min()!
        XCTAssertTrue((0..<d).filter { !kept.contains($0) }.allSatisfy { channel[$0] <= weakestKept })
        XCTAssertNotEqual(sel.channels, Array(0..<w), "the choice is not the trivial first channels")

        // Every kept value is the base's own (bit patterns); the choice is what `sel` says.
        func same(_ a: Float, _ b: Float) -> Bool { a.bitPattern == b.bitPattern }
        let S = sel.channels
        for i in 0..<L {
            let n = SideBlock.Names(i), b = layers[i], ks = sel.layers[i]
            let q = side.value(n.q), k = side.value(n.k), v = side.value(n.v), o = side.value(n.o)
            var ok = true
            for h in 0..<H {
                for j in 0..<hd {
                    for x in 0..<w {
                        ok = ok && same(q[(h * hd + j) * w + x], b.q[(h * bhd + ks.queryKey[h / 2][j]) * d + S[x]])
                        ok = ok && same(o[x * H * hd + h * hd + j], b.o[S[x] * H * bhd + h * bhd + ks.value[h / 2][j]])
                    }
                }
            }
            for g in 0..<K {
                for j in 0..<hd {
                    for x in 0..<w {
                        ok = ok && same(k[(g * hd + j) * w + x], b.k[(g * bhd + ks.queryKey[g][j]) * d + S[x]])
                        ok = ok && same(v[(g * hd + j) * w + x], b.v[(g * bhd + ks.value[g][j]) * d + S[x]])
                    }
                }
            }
            let gate = side.value(n.gate), up = side.value(n.up), down = side.value(n.down)
            for (j, mm) in ks.mlp.enumerated() {
                for x in 0..<w {
                    ok = ok && same(gate[j * w + x], b.g[mm * d + S[x]]) && same(up[j * w + x], b.u[mm * d + S[x]])
                    ok = ok && same(down[x * fs + j], b.dn[S[x] * f + mm])
                }
            }
            for x in 0..<w {
                ok = ok && same(side.value(n.inNorm)[x], norms[i].in[S[x]])
                ok = ok && same(side.value(n.postNorm)[x], norms[i].post[S[x]])
            }
            XCTAssertTrue(ok, "block \(i) holds values other than the base's kept rows and columns")
            // The linear downsampler is the projection onto the kept channels.
            let p = side.value(config.downsamplePrefix(i) + "weight")
            for x in 0..<w { for c in 0..<d { XCTAssertEqual(p[x * d + c], c == S[x] ? 1 : 0) } }
            XCTAssertTrue((0..<w).allSatisfy { side.value(config.gateName(i))[$0] == 0.5 }, "gates keep their start")
        }
        let finalNorm = try matrix(source, "model.norm.weight").values
        XCTAssertEqual((0..<w).map { side.value("model.norm_qst.weight")[$0] }, S.map { finalNorm[$0] })
        XCTAssertTrue((0..<(d * w)).allSatisfy { side.value("upsample.weight")[$0] == 0 }, "upsample stays zero")
    }

    func testBandsCoverEveryBasePairOnce() {
        XCTAssertEqual(PrunedBaseInit.pairBands(sidePairs: 4, basePairs: 32).map(\.lowerBound), [0, 8, 16, 24])
        XCTAssertEqual(PrunedBaseInit.pairBands(sidePairs: 3, basePairs: 8), [0..<2, 2..<5, 5..<8])
        XCTAssertEqual(PrunedBaseInit.top(2, of: [1, 3, 3, 0]), [1, 2])
        XCTAssertEqual(PrunedBaseInit.top(2, of: [5, 3, 5, 5]), [0, 2], "ties keep the lower index")
    }

    func testOPTBaseIsRefused() throws {
        let source = try openWeightSource(path: try OPTSideFixtures.tinyOPT("tiny-opt"))
        let shape = try BaseShape.parse(configJSON: try source.configJSON(), context: "t")
        let config = SideConfig(base: shape, r: SideConfig.defaultReduction(for: shape), headMix: .residual)
        XCTAssertThrowsError(try PrunedBaseInit.select(config: config, source: source)) {
            XCTAssertTrue("\($0)".contains("LLaMA-family bases only, not OPT"), "\($0)")
        }
    }

    func testConfigOnlyIsRefused() throws {
        let shape = try BaseShape.parse(
            configJSON: try FrozenModel(path: try ExportFixtures.tinyContainer()).source.configJSON(), context: "t")
        let side = try SideWeights(config: SideConfig(base: shape, r: 2, headMix: .residual))
        XCTAssertThrowsError(try PrunedBaseInit.initialize(side, modelPath: "/x/config.json")) {
            XCTAssertTrue("\($0)".contains("needs the base's weights"), "\($0)")
        }
    }
}
