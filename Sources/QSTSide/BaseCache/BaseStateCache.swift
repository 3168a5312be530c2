import Foundation
import QSTEngine
import QSTFormat
import QSTNN

/// `qst-tune --cache-base DIR`: the frozen base's contribution to each training example — its pooled
/// hidden states `down_v(h_v)`, v = 0…L, and norm(h_N) at the labelled positions — stored on disk the first
/// time the example is seen and read back instead of running the frozen forward afterwards.
///
/// Valid only for gradient-free (pooling) downsamplers, where these states depend on the data alone.
/// Records are keyed per example (SHA-256 of its token ids and labels), because batches are reshuffled and
/// padded differently every epoch; this relies on the engine's row-independent training forward, which
/// gives an example the same bits in any batch. Each micro-batch with new examples becomes one segment
/// file, written atomically; only the index (about 100 bytes per example) and one micro-batch's states are
/// held in memory. Format: Formats/BASECACHE.md.
public final class BaseStateCache: FrozenStateProvider {
    public struct Stats: Codable, Sendable, Equatable {
        /// Examples served from the cache / computed by the frozen forward (and stored).
        public var hits = 0, misses = 0
        public var segmentsWritten = 0, bytesWritten = 0, bytesRead = 0
        public var backboneSeconds = 0.0, readSeconds = 0.0, writeSeconds = 0.0
    }

    public let directory: String
    public let identity: BaseCacheIdentity
    public let compressionLevel: Int32
    public private(set) var stats = Stats()
    /// Bytes of all segment files in the folder.
    public private(set) var storedBytes = 0
    private var index: [BaseCacheKey: BaseCacheLocation] = [:]

    public var storedExamples: Int { index.count }

    /// Opens (or creates) the cache folder and indexes its segments. Throws when the side network's
    /// downsampler trains, when `identity` does not describe `config`, and — naming the file — when a
    /// segment was built for another setup or is damaged. Such a cache is never used, nor deleted.
    public init(
        directory: String, identity: BaseCacheIdentity, config: SideConfig, sideOrigin: String = "side network",
        compressionLevel: Int32 = 3
    ) throws {
        guard !config.downsample.isTrainable else {
            throw QSTError.file(
                sideOrigin,
                "--cache-base needs a gradient-free downsampler (avgpool or maxpool), but this "
                    + "side network's is \(config.downsample.rawValue), which trains, so the states it feeds change "
                    + "every step; create one with qst-init-side --downsample avgpool")
        }
        let expected = [
            ("downsample", identity.downsample, config.downsample.rawValue), ("r", "\(identity.r)", "\(config.r)"),
            ("width", "\(identity.width)", "\(config.width)"),
            ("layers", "\(identity.layers)", "\(config.base.layerCount)"),
            ("hidden size", "\(identity.hiddenSize)", "\(config.headSize)"),
        ]
        for (what, a, b) in expected where a != b {
            throw QSTError.file(directory, "cache identity has \(what) \(a) but the side network has \(b)")
        }
        self.directory = directory; self.identity = identity; self.compressionLevel = compressionLevel
        let fm = FileManager.default
        do { try fm.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
            throw QSTError.file(directory, "cannot create the cache folder: \(error.localizedDescription)")
        }
        let names: [String]
        do { names = try fm.contentsOfDirectory(atPath: directory) } catch {
            throw QSTError.file(directory, "cannot list the cache folder: \(error.localizedDescription)")
        }
        for name in names.sorted() where Self.isSegmentName(name) {
            let path = directory + "/" + name
            for (key, loc) in try BaseCacheSegment.readIndex(path: path, identity: identity, cacheDirectory: directory)
            where index[key] == nil { index[key] = loc }
            storedBytes += (try? fm.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        }
    }

    static func isSegmentName(_ name: String) -> Bool {
        name.hasPrefix("segment-") && name.hasSuffix("." + BaseCacheSegment.fileExtension)
    }

    public func frozenStates(
        _ batch: SideBatch, model: SideModel,
        visit: (Int, UnsafePointer<Float>) throws -> Void
    ) throws -> [Float] {
        let c = model.config
        guard c.downsample.rawValue == identity.downsample, c.r == identity.r, c.base.layerCount == identity.layers,
            c.headSize == identity.hiddenSize
        else {
            throw QSTError.file(
                directory,
                "cache is for downsample \(identity.downsample) r \(identity.r), the side network "
                    + "uses \(c.downsample.rawValue) r \(c.r)")
        }
        let tokens = batch.tokens, T = tokens.seqLen, B = tokens.batch
        let L = identity.layers, w = identity.width, d = identity.hiddenSize
        let ignore = ChunkedCrossEntropy.ignoreIndex
        let keys = (0..<B).map { b in
            BaseCacheKey(
                ids: tokens.ids[(b * T)..<(b * T + tokens.lengths[b])],
                labels: batch.labels[(b * T)..<(b * T + tokens.lengths[b])])
        }
        let labelled = (0..<B).map { b in
            batch.labels[(b * T)..<(b * T + tokens.lengths[b])].filter { $0 != ignore }.count
        }
        var records: [BaseCacheKey: [Float]] = [:]
        var missRows: [Int] = []
        for b in 0..<B where index[keys[b]] == nil && !missRows.contains(where: { keys[$0] == keys[b] }) {
            missRows.append(b)
        }
        if !missRows.isEmpty {
            try computeAndStore(
                rows: missRows, keys: keys, labelled: labelled, batch: batch, model: model, into: &records)
        }
        let readStart = Date()
        for b in 0..<B {
            if records[keys[b]] != nil { if !missRows.contains(b) { stats.hits += 1 }; continue }
            guard let loc = index[keys[b]] else {
                throw QSTError.file(directory, "example \(b) vanished from the index")
            }
            guard loc.tokens == tokens.lengths[b], loc.labelled == labelled[b] else {
                throw QSTError.file(
                    loc.file,
                    "record \(keys[b].hex.prefix(16))… holds \(loc.tokens) tokens / \(loc.labelled) "
                        + "labelled, the example has \(tokens.lengths[b]) / \(labelled[b]) (damaged cache)")
            }
            records[keys[b]] = try BaseCacheSegment.readRecord(loc, identity: identity)
            stats.hits += 1
            stats.bytesRead += loc.size
        }
        stats.readSeconds += Date().timeIntervalSince(readStart)
        stats.misses += missRows.count
        // Padding rows stay zero: the side network's real rows never read them (causal, length-masked).
        let pooled = FloatBuffer(count: B * T * w)
        pooled.zero()
        // The side network consumes each state inside `visit`; a live forward calls it with OpenBLAS held at one
        // thread, so the cached states are served the same way: OpenBLAS's results depend on its thread count
        // on some cores (Haswell/Zen kernels), and the weights must equal a run without the cache bit for bit.
        try EngineBLAS.singleThreaded {
            for v in 0...L {
                for b in 0..<B {
                    let len = tokens.lengths[b]
                    try records[keys[b]]!.withUnsafeBufferPointer { r in
                        guard
                            r.count
                                == BaseCacheRecord.floatCount(tokens: len, labelled: labelled[b], identity: identity)
                        else {
                            throw QSTError.file(directory, "record \(keys[b].hex.prefix(16))… has \(r.count) floats")
                        }
                        (pooled.pointer + b * T * w).update(from: r.baseAddress! + v * len * w, count: len * w)
                    }
                }
                try visit(v, pooled.constPointer)
            }
        }
        var hN = [Float](repeating: 0, count: B * T * d)
        for b in 0..<B {
            let len = tokens.lengths[b], rec = records[keys[b]]!
            var m = 0
            for t in 0..<len where batch.labels[b * T + t] != ignore {
                let src = (L + 1) * len * w + m * d, dst = (b * T + t) * d
                for j in 0..<d { hN[dst + j] = rec[src + j] }
                m += 1
            }
        }
        return hN
    }

    /// Runs the frozen forward over the examples not cached yet (as one padded sub-batch; the engine's
    /// rows do not depend on their batch-mates), pools, stores them as one segment.
    private func computeAndStore(
        rows: [Int], keys: [BaseCacheKey], labelled: [Int], batch: SideBatch, model: SideModel,
        into records: inout [BaseCacheKey: [Float]]
    ) throws {
        let start = Date()
        let tokens = batch.tokens, T = tokens.seqLen
        let L = identity.layers, w = identity.width, d = identity.hiddenSize
        let lengths = rows.map { tokens.lengths[$0] }
        let sub = TokenBatch(sequences: rows.map { Array(tokens.ids[($0 * T)..<($0 * T + tokens.lengths[$0])]) })
        let ts = sub.seqLen, ns = sub.ids.count
        var out = rows.indices.map { i in
            [Float](
                repeating: 0,
                count: BaseCacheRecord.floatCount(tokens: lengths[i], labelled: labelled[rows[i]], identity: identity))
        }
        let pooled = FloatBuffer(count: ns * w),
            scratch = FloatBuffer(count: Downsampler.scratchCount(rows: ns, config: model.config))
        var rng = SplitMix64(seed: 0)  // pooling draws nothing; the parameter is for trainable downsamplers
        let hN = try model.backbone.forwardHiddenStates(sub) { v, h in
            guard v >= 0, v <= L else { throw QSTError("backbone visited hidden state \(v) outside 0...\(L)") }
            Downsampler.forward(
                layer: max(0, v - 1), weights: model.weights, h: h, n: ns, out: pooled.pointer, tape: nil,
                rng: &rng, scratch: scratch)
            for i in rows.indices {
                let len = lengths[i]
                out[i].withUnsafeMutableBufferPointer { o in
                    (o.baseAddress! + v * len * w).update(from: pooled.pointer + i * ts * w, count: len * w)
                }
            }
        }
        guard hN.count == ns * d else {
            throw QSTError("backbone returned \(hN.count) floats for norm(h_N), expected \(ns)·\(d)")
        }
        for (i, b) in rows.enumerated() {
            var m = 0
            for t in 0..<lengths[i] where batch.labels[b * T + t] != ChunkedCrossEntropy.ignoreIndex {
                let dst = (L + 1) * lengths[i] * w + m * d, src = (i * ts + t) * d
                for j in 0..<d { out[i][dst + j] = hN[src + j] }
                m += 1
            }
        }
        let written = Date()
        stats.backboneSeconds += written.timeIntervalSince(start)
        var payloads: [(BaseCacheRecord, Data)] = []
        for (i, b) in rows.enumerated() {
            let rec = BaseCacheRecord(key: keys[b], tokens: lengths[i], labelled: labelled[b], floats: out[i])
            payloads.append((rec, try rec.compressed(level: compressionLevel)))
            records[keys[b]] = out[i]
        }
        let name =
            "segment-" + String(Checksums.sha256Hex(Data(rows.flatMap { keys[$0].bytes })).prefix(16)) + "."
            + BaseCacheSegment.fileExtension
        let path = directory + "/" + name
        let locations = try BaseCacheSegment.write(path: path, identity: identity, records: payloads)
        index.merge(locations) { old, _ in old }
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        storedBytes += size
        stats.bytesWritten += size
        stats.segmentsWritten += 1
        stats.writeSeconds += Date().timeIntervalSince(written)
    }
}
