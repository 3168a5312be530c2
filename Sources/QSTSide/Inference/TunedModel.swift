import Foundation
import QSTCore
import QSTEngine
import QSTFormat
import QSTNN

/// Which sequences of a batch each side network reads.
public enum SideRouting: Sendable, Equatable {
    /// Every side network sees every sequence (evaluation: one base pass, one result per adapter).
    case shared
    /// Side network `j` sees sequence `j` only (generation with several adapters: the base runs the
    /// sequences as one batch, so its weights are read once per token for all of them).
    case perSequence
}

/// Caches of one tuned generation: the base's and one per side network (the reference keeps two caches).
public final class TunedCache {
    public let base: KVCache
    public let sides: [SideKVCache]
    public let routing: SideRouting
    init(base: KVCache, sides: [SideKVCache], routing: SideRouting) {
        self.base = base; self.sides = sides; self.routing = routing
    }
    public var bytes: Int { base.bytes + sides.reduce(0) { $0 + $1.bytes } }

    /// Keeps the first `length` rows of the base's and every side's cache (`KVCache.truncate(to:)`).
    public func truncate(to length: Int) throws {
        guard sides.allSatisfy({ $0.length == base.length }) else {
            throw QSTError("tuned cache: side caches and the base cache hold different lengths")
        }
        try base.truncate(to: length)
        for s in sides { try s.truncate(to: length) }
    }
}

/// The output of one tuned step: the base's final-normed hidden states and, per side network, the head
/// inputs `o` of the requested rows (feed them to `FrozenModel.logits(hidden:rows:)`).
public struct TunedStep {
    public let final: FloatBuffer
    public let heads: [FloatBuffer]
    public let headRows: [Int]
}

/// A frozen base with one or more side networks beside it. One base forward per step feeds every side
/// network its hidden states as they are computed; each side network keeps its own KV cache.
public final class TunedModel {
    public let base: FrozenModel
    public let sides: [SideWeights]
    let runners: [SideRunner]

    /// `precision`: how the side networks are packed for decoding; nil takes `SidePackPrecision(for:)` the
    /// base's matmul path (bfloat16 under `--matmul auto`, as the server packs them).
    public init(base: FrozenModel, sides: [SideWeights], precision: SidePackPrecision? = nil) throws {
        guard !sides.isEmpty else { throw QSTError("tuned model: no side network given") }
        for (k, s) in sides.enumerated() {
            try s.config.base.checkRuns(beside: base, side: "side network \(k + 1)", base: base.source.origin)
        }
        self.base = base
        self.sides = sides
        let threads = Parallel.threadCount()
        let precision = precision ?? SidePackPrecision(for: base.options.matmulPath)
        runners = sides.map { SideRunner(weights: $0, precision: precision, threads: threads) }
    }

    /// Caches for `batch` sequences of up to `capacity` tokens. With `.perSequence`, batch must equal the
    /// number of side networks. `float32`: the base cache unrounded (`FrozenModel.makeCache`).
    public func makeCache(batch: Int, capacity: Int, routing: SideRouting, float32: Bool = false) throws -> TunedCache {
        if routing == .perSequence, batch != runners.count {
            throw QSTError("tuned model: \(runners.count) side networks need \(runners.count) sequences, got \(batch)")
        }
        let sideBatch = routing == .shared ? batch : 1
        return TunedCache(
            base: base.makeCache(batch: batch, capacity: capacity, float32: float32),
            sides: runners.map { $0.makeCache(batch: sideBatch, capacity: capacity) }, routing: routing)
    }

    /// Runs `newTokens` tokens per sequence (as `FrozenModel.forward`). Without a cache the tokens form
    /// complete right-padded sequences. `lastOnly` keeps only each sequence's last new row in `heads`.
    public func forward(
        ids: [Int32], batch: Int, newTokens: Int, valid: [UInt8]? = nil, cache: TunedCache? = nil,
        routing: SideRouting = .shared, lastOnly: Bool = false
    ) throws -> TunedStep {
        let routing = cache?.routing ?? routing
        // d: the hidden states the side networks read; e: what the head reads (OPT's word_embed_proj_dim).
        let n = batch * newTokens, d = base.hiddenSize, e = base.headInputSize
        let mask = valid ?? [UInt8](repeating: 1, count: n)
        guard mask.count == n else { throw QSTError("tuned forward: mask has \(mask.count) entries, expected \(n)") }
        if routing == .perSequence, batch != runners.count {
            throw QSTError("tuned model: \(runners.count) side networks need \(runners.count) sequences, got \(batch)")
        }
        let sideBatch = routing == .shared ? batch : 1
        let caches = cache?.sides ?? runners.map { $0.makeCache(batch: sideBatch, capacity: newTokens) }
        // Row offset of each side's first row in the base's [n, d] hidden states.
        let firstRow = runners.indices.map { routing == .shared ? 0 : $0 * newTokens }
        for (j, r) in runners.enumerated() {
            let positions = try mask.withUnsafeBufferPointer {
                try caches[j].append(newTokens: newTokens, valid: $0.baseAddress! + firstRow[j])
            }
            r.begin(positions: positions)
        }
        // Rows (within each side's rows) whose head input is wanted.
        let rows =
            lastOnly ? (0..<sideBatch).map { $0 * newTokens + newTokens - 1 } : Array(0..<(sideBatch * newTokens))
        let runners = self.runners, L = base.layerCount
        let final = try base.forward(ids: ids, batch: batch, newTokens: newTokens, valid: mask, cache: cache?.base) {
            v, h in
            for (j, r) in runners.enumerated() {
                r.visit(v, h: h + firstRow[j] * d, newTokens: newTokens, cache: caches[j])
                if v == L { r.prepareHead(rows: rows) }
            }
        }
        for c in caches { c.commit(newTokens: newTokens) }
        let heads = runners.enumerated().map { j, r -> FloatBuffer in
            let o = FloatBuffer(count: rows.count * e)
            r.head(count: rows.count, final: { final.constPointer + (firstRow[j] + rows[$0]) * e }, into: o.pointer)
            return o
        }
        return TunedStep(final: final, heads: heads, headRows: rows)
    }

    /// Full logits `[batch·seqLen, vocab]` of each side network for whole right-padded sequences.
    public func logits(_ batch: TokenBatch) throws -> [FloatBuffer] {
        let valid = Attention.maskFromLengths(batch.lengths, seqLen: batch.seqLen)
        let step = try forward(ids: batch.ids, batch: batch.batch, newTokens: batch.seqLen, valid: valid)
        return step.heads.map { base.logits(hidden: $0.constPointer, rows: batch.ids.count) }
    }
}
