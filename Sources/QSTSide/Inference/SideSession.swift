import Foundation
import QSTCore
import QSTEngine
import QSTFormat
import QSTNN

/// One sequence's side network during batched serving: the side's runner (its workspace holds this
/// sequence's rows of a step) and the sequence's own side KV cache. Several sessions may share one
/// `SideWeights`; each request gets its own session.
public final class SideSession {
    public let weights: SideWeights
    let runner: SideRunner
    let cache: SideKVCache

    /// `capacity`: the most tokens (prompt + continuation) the sequence will hold. Servers pack each side
    /// network once (`SideInferenceWeights`) and open every request's session on the pack.
    public init(inference pack: SideInferenceWeights, capacity: Int, threads: Int = Parallel.threadCount()) {
        weights = pack.weights
        runner = SideRunner(pack: pack, threads: threads)
        cache = runner.makeCache(batch: 1, capacity: capacity)
    }

    /// A session with its own packed copy of `weights` (`SidePackPrecision(for:)` the base's matmul path
    /// gives what `TunedModel` uses).
    public convenience init(
        weights: SideWeights, precision: SidePackPrecision, capacity: Int, threads: Int = Parallel.threadCount()
    ) {
        self.init(inference: SideInferenceWeights(weights, precision: precision), capacity: capacity, threads: threads)
    }

    public var bytes: Int { cache.bytes }
}

/// One sequence's part of a ragged tuned step: new tokens, its base cache and, unless it runs the plain
/// base, its side session.
public struct TunedSegment {
    public var ids: [Int32]
    public var cache: KVCache
    public var side: SideSession?

    public init(ids: [Int32], cache: KVCache, side: SideSession?) {
        self.ids = ids; self.cache = cache; self.side = side
    }
}

extension TunedModel {
    /// Checks that side network `weights` fits `base` (the dimension checks of `init(base:sides:)`).
    public static func validate(side weights: SideWeights, base: FrozenModel) throws {
        _ = try TunedModel(base: base, sides: [weights])
    }

    /// One step of continuous batching: every segment's new tokens in one base forward
    /// (`FrozenModel.forwardRagged`, the base's weights read once for all requests whatever their side
    /// network), each side session fed its own rows as the base computes them — the same `SideRunner` code
    /// as `forward`. Returns the head inputs `[segments, headInputSize]` of each segment's last row: the side
    /// mix for segments with a side, the base's normed output for the others.
    public static func raggedStep(base: FrozenModel, segments: [TunedSegment]) throws -> FloatBuffer {
        let d = base.hiddenSize, e = base.headInputSize, L = base.layerCount
        var starts: [Int] = [], row = 0
        for s in segments { starts.append(row); row += s.ids.count }
        for s in segments {
            guard let side = s.side else { continue }
            guard side.cache.length == s.cache.length else {
                throw QSTError(
                    "ragged step: side cache at \(side.cache.length) tokens, base cache at \(s.cache.length)")
            }
        }
        // Side caches are appended after the base's checks pass (inside the visit at v = 0), so a rejected
        // step leaves them as they were.
        let sides = SideVisits(segments: segments, starts: starts, width: d, layers: L)
        let final = try base.forwardRagged(segments.map { RaggedSegment(ids: $0.ids, cache: $0.cache) }) { v, h in
            if v == 0 {
                for s in segments {
                    guard let side = s.side else { continue }
                    let t = s.ids.count
                    let positions = try [UInt8](repeating: 1, count: t).withUnsafeBufferPointer {
                        try side.cache.append(newTokens: t, valid: $0.baseAddress!)
                    }
                    side.runner.begin(positions: positions)
                }
            }
            sides.run(v, h: h)
        }
        let out = FloatBuffer(count: segments.count * e)
        for (j, s) in segments.enumerated() {
            let last = final.constPointer + (starts[j] + s.ids.count - 1) * e
            if let side = s.side {
                side.cache.commit(newTokens: s.ids.count)
                side.runner.head(count: 1, final: { _ in last }, into: out.pointer + j * e)
            } else {
                (out.pointer + j * e).update(from: last, count: e)
            }
        }
        return out
    }
}

/// The side networks' part of one ragged layer: each request's side session consumes its own rows of the
/// base's hidden state. The sessions share nothing but read-only weights, so several run in parallel, one
/// per worker — a side network's products at width d/r are too small to split over the cores themselves
/// (`SideInferenceOps`), and run one after another they left the other core idle for most of a batched
/// step (8 requests on 8 side networks, perf: BENCHMARKS.md §16). Each session computes exactly what it
/// computes alone.
private struct SideVisits: @unchecked Sendable {
    let segments: [TunedSegment]
    let sided: [Int]
    let starts: [Int]
    let width: Int
    let layers: Int

    init(segments: [TunedSegment], starts: [Int], width: Int, layers: Int) {
        self.segments = segments; self.starts = starts; self.width = width; self.layers = layers
        sided = segments.indices.filter { segments[$0].side != nil }
    }

    func one(_ j: Int, _ v: Int, h: UnsafePointer<Float>) {
        let s = segments[j], side = s.side!, t = s.ids.count
        side.runner.visit(v, h: h + starts[j] * width, newTokens: t, cache: side.cache)
        if v == layers { side.runner.prepareHead(rows: [t - 1]) }
    }

    func run(_ v: Int, h: UnsafePointer<Float>) {
        // One session alone (qst-generate's case, or a prompt chunk) keeps the workers for its own
        // attention; several take one worker each.
        let hs = SendablePointer(h)
        Parallel.forRanges(sided.count, threads: sided.count > 1 ? Parallel.defaultThreads : 1, minChunk: 1) { a, b in
            for u in a..<b { one(sided[u], v, h: UnsafePointer(hs.base)) }
        }
    }
}
