import Foundation
import QSTEngine
import QSTFormat
import QSTKernels

/// What a base-state cache is valid for (Formats/BASECACHE.md §2). Two caches with different identities
/// hold different numbers for the same example, so a segment is only read when its identity equals the run's.
public struct BaseCacheIdentity: Codable, Sendable, Equatable {
    /// SHA-256 of the base: the container's tensor directory, or of a safetensors folder's files.
    public var base: String
    public var layers: Int
    /// Width of the cached final state norm(h_N): the hidden size, or OPT's word_embed_proj_dim.
    public var hiddenSize: Int
    /// `avgpool` or `maxpool`.
    public var downsample: String
    public var r: Int
    public var width: Int
    public var maxLength: Int
    /// The engine's arithmetic: matmul path and the CPU features that pick its kernels.
    public var engine: String

    enum CodingKeys: String, CodingKey {
        case base, layers, r, width, downsample, engine
        case hiddenSize = "hidden_size", maxLength = "max_length"
    }

    public init(
        base: String, layers: Int, hiddenSize: Int, downsample: String, r: Int, width: Int, maxLength: Int,
        engine: String
    ) {
        self.base = base; self.layers = layers; self.hiddenSize = hiddenSize; self.downsample = downsample
        self.r = r; self.width = width; self.maxLength = maxLength; self.engine = engine
    }

    /// The identity of a run of `config` over `model` with sequences of at most `maxLength` tokens.
    public static func of(model: FrozenModel, config: SideConfig, maxLength: Int) throws -> BaseCacheIdentity {
        let base: String
        if let c = model.source as? ContainerWeightSource {
            base = try c.container.directorySHA256()
        } else if let s = model.source as? SafetensorsWeightSource {
            var h = SHA256Hasher()
            for f in s.checkpoint.files { h.update(f.mapped.bytes) }
            try s.configJSON().withUnsafeBytes { h.update($0) }
            base = h.finalizeHex()
        } else {
            throw QSTError.file(
                model.source.origin, "the base-state cache needs a .qst4 container or a safetensors folder")
        }
        let engine = "matmul=\(model.options.matmulPath.rawValue) cpu=" + String(qst_cpu_features(), radix: 16)
        return BaseCacheIdentity(
            base: base, layers: config.base.layerCount, hiddenSize: config.headSize,
            downsample: config.downsample.rawValue, r: config.r, width: config.width,
            maxLength: maxLength, engine: engine)
    }

    /// The canonical bytes stored in every segment: JSON, sorted keys, no whitespace.
    func encoded() throws -> [UInt8] {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return [UInt8](try e.encode(self))
    }

    /// "field stored vs expected" for every field that differs.
    func differences(from other: BaseCacheIdentity) -> [String] {
        var out: [String] = []
        func cmp<T: Equatable>(_ name: String, _ a: T, _ b: T) { if a != b { out.append("\(name) \(a) vs \(b)") } }
        cmp("base sha256", String(base.prefix(16)) + "…", String(other.base.prefix(16)) + "…")
        cmp("layers", layers, other.layers); cmp("hidden size", hiddenSize, other.hiddenSize)
        cmp("downsample", downsample, other.downsample); cmp("r", r, other.r); cmp("width", width, other.width)
        cmp("max length", maxLength, other.maxLength); cmp("engine", engine, other.engine)
        return out
    }
}

/// SHA-256 of one tokenized training example: `u32 T`, then its T token ids and T labels as i32 (§3).
struct BaseCacheKey: Hashable, Sendable {
    var bytes: [UInt8]

    init(bytes: [UInt8]) { self.bytes = bytes }

    init(ids: ArraySlice<Int32>, labels: ArraySlice<Int32>) {
        var raw: [UInt8] = []
        raw.reserveCapacity(4 + 8 * ids.count)
        func put(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { raw += $0 } }
        put(UInt32(ids.count))
        for t in ids { put(UInt32(bitPattern: t)) }
        for t in labels { put(UInt32(bitPattern: t)) }
        let hex = raw.withUnsafeBytes { Checksums.sha256Hex($0) }
        let digits = Array(hex.utf8)
        bytes = stride(from: 0, to: digits.count, by: 2).map {
            UInt8(String(decoding: digits[$0..<($0 + 2)], as: UTF8.self), radix: 16) ?? 0
        }
    }

    var hex: String { bytes.map { String(format: "%02x", $0) }.joined() }
}

/// One example's frozen contribution: `down_v(h_v)` for v = 0…L at its T real positions, then norm(h_N)
/// at its M labelled positions (§4).
struct BaseCacheRecord {
    var key: BaseCacheKey
    var tokens: Int
    var labelled: Int
    var floats: [Float]

    static func floatCount(tokens: Int, labelled: Int, identity i: BaseCacheIdentity) -> Int {
        (i.layers + 1) * tokens * i.width + labelled * i.hiddenSize
    }

    /// Byte planes (byte 0 of every float, then byte 1, …) compressed as one zstd frame: the exponent
    /// bytes of neighbouring floats repeat, which zstd finds only when they are adjacent.
    func compressed(level: Int32) throws -> Data {
        let n = floats.count
        var planes = [UInt8](repeating: 0, count: 4 * n)
        planes.withUnsafeMutableBufferPointer { (dst: inout UnsafeMutableBufferPointer<UInt8>) in
            floats.withUnsafeBytes { (src: UnsafeRawBufferPointer) in
                for i in 0..<n { for p in 0..<4 { dst[p * n + i] = src[4 * i + p] } }
            }
        }
        return try Zstd.compress(Data(planes), level: level)
    }

    static func decompress(_ payload: UnsafeRawBufferPointer, count n: Int, what: String) throws -> [Float] {
        let planes = try Zstd.decompress(payload, expectedSize: 4 * n, what: what)
        var out = [Float](repeating: 0, count: n)
        out.withUnsafeMutableBytes { (dst: UnsafeMutableRawBufferPointer) in
            planes.withUnsafeBytes { (src: UnsafeRawBufferPointer) in
                for i in 0..<n { for p in 0..<4 { dst[4 * i + p] = src[p * n + i] } }
            }
        }
        return out
    }
}

/// Where a record lives: its segment file and byte range (§5 index entry).
struct BaseCacheLocation {
    var file: String
    var tokens: Int
    var labelled: Int
    var offset: Int
    var size: Int
    var crc: UInt32
}

/// Segment files (§5): header with the identity, an index of fixed-size entries, then the payloads.
enum BaseCacheSegment {
    static let magic: [UInt8] = Array("QSTBCSEG".utf8)
    static let version: UInt32 = 1
    static let entrySize = 64
    static let fileExtension = "qbc"

    /// Writes `records` (already compressed) atomically to `path`.
    static func write(path: String, identity: BaseCacheIdentity, records: [(BaseCacheRecord, Data)]) throws
        -> [BaseCacheKey: BaseCacheLocation]
    {
        let id = try identity.encoded()
        var head: [UInt8] = magic
        func u32(_ v: UInt32, into b: inout [UInt8]) { withUnsafeBytes(of: v.littleEndian) { b += $0 } }
        func u64(_ v: UInt64, into b: inout [UInt8]) { withUnsafeBytes(of: v.littleEndian) { b += $0 } }
        u32(version, into: &head); u32(UInt32(id.count), into: &head)
        head += id
        while head.count % 8 != 0 { head.append(0) }
        let indexStart = head.count + 8
        var offset = indexStart + records.count * entrySize
        var index: [UInt8] = []
        var locations: [BaseCacheKey: BaseCacheLocation] = [:]
        for (rec, payload) in records {
            let crc = payload.withUnsafeBytes { Checksums.crc32c($0) }
            index += rec.key.bytes
            u32(UInt32(rec.tokens), into: &index); u32(UInt32(rec.labelled), into: &index)
            u64(UInt64(offset), into: &index); u64(UInt64(payload.count), into: &index)
            u32(crc, into: &index); u32(0, into: &index)
            locations[rec.key] = BaseCacheLocation(
                file: path, tokens: rec.tokens, labelled: rec.labelled, offset: offset,
                size: payload.count, crc: crc)
            offset += payload.count
        }
        u32(UInt32(records.count), into: &head)
        u32(index.withUnsafeBytes { Checksums.crc32c($0) }, into: &head)
        let out = try AtomicFileWriter(path: path)
        try out.write(head); try out.write(index)
        for (_, payload) in records { try out.write(payload) }
        try out.commit()
        return locations
    }

    /// Reads and checks a segment's header and index; throws naming the file when it is not a segment of
    /// `identity` or is damaged.
    static func readIndex(path: String, identity: BaseCacheIdentity, cacheDirectory: String) throws -> [BaseCacheKey:
        BaseCacheLocation]
    {
        let file = try SegmentFile(path: path)
        defer { file.close() }
        let fixed = try file.read(at: 0, count: 16, what: "header")
        guard Array(fixed[0..<8]) == magic else {
            throw QSTError.file(path, "not a base-state cache segment (bad magic)")
        }
        let ver = fixed.u32(8), idLen = Int(fixed.u32(12))
        guard ver == version else {
            throw QSTError.file(path, "segment format version \(ver), this build reads \(version)")
        }
        guard idLen <= 1 << 16 else { throw QSTError.file(path, "identity length \(idLen) is implausible") }
        let idBytes = try file.read(at: 16, count: idLen, what: "identity")
        let stored: BaseCacheIdentity
        do { stored = try JSONDecoder().decode(BaseCacheIdentity.self, from: Data(idBytes)) } catch {
            throw QSTError.file(path, "identity is not valid JSON: \(error)")
        }
        if stored != identity {
            throw QSTError.file(
                path,
                "base-state cache built for another setup (\(stored.differences(from: identity).joined(separator: ", ")), "
                    + "stored vs this run); remove \(cacheDirectory) or pass another --cache-base")
        }
        let countAt = (16 + idLen + 7) / 8 * 8
        let counts = try file.read(at: countAt, count: 8, what: "record count")
        let n = Int(counts.u32(0)), indexCRC = counts.u32(4)
        guard n <= file.size / entrySize else { throw QSTError.file(path, "record count \(n) does not fit the file") }
        let index = try file.read(at: countAt + 8, count: n * entrySize, what: "index")
        guard index.withUnsafeBytes({ Checksums.crc32c($0) }) == indexCRC else {
            throw QSTError.file(path, "index CRC-32C mismatch")
        }
        var out: [BaseCacheKey: BaseCacheLocation] = [:]
        for e in 0..<n {
            let b = e * entrySize
            let loc = BaseCacheLocation(
                file: path, tokens: Int(index.u32(b + 32)), labelled: Int(index.u32(b + 36)),
                offset: Int(index.u64(b + 40)), size: Int(index.u64(b + 48)), crc: index.u32(b + 56))
            guard loc.offset >= countAt + 8 + n * entrySize, loc.size >= 0, loc.offset + loc.size <= file.size else {
                throw QSTError.file(
                    path, "record \(e): payload \(loc.offset)+\(loc.size) lies outside the file (\(file.size) bytes)")
            }
            out[BaseCacheKey(bytes: Array(index[b..<(b + 32)]))] = loc
        }
        return out
    }

    /// One record's floats, checked against its CRC-32C and expected size.
    static func readRecord(_ loc: BaseCacheLocation, identity: BaseCacheIdentity) throws -> [Float] {
        let file = try SegmentFile(path: loc.file)
        defer { file.close() }
        let payload = try file.read(at: loc.offset, count: loc.size, what: "record payload")
        return try payload.withUnsafeBytes { raw in
            guard Checksums.crc32c(raw) == loc.crc else {
                throw QSTError.file(
                    loc.file, "record at offset \(loc.offset): payload CRC-32C mismatch (damaged cache)")
            }
            let n = BaseCacheRecord.floatCount(tokens: loc.tokens, labelled: loc.labelled, identity: identity)
            return try BaseCacheRecord.decompress(raw, count: n, what: "\(loc.file): record at offset \(loc.offset)")
        }
    }
}

/// Plain `pread` access to a segment.
private final class SegmentFile {
    let path: String
    let fd: Int32
    let size: Int

    init(path: String) throws {
        self.path = path
        fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw QSTError.file(path, "cannot open: \(String(cString: strerror(errno)))") }
        var st = stat()
        guard fstat(fd, &st) == 0 else { Glibc.close(fd); throw QSTError.file(path, "cannot stat") }
        size = Int(st.st_size)
    }

    func close() { Glibc.close(fd) }

    func read(at offset: Int, count: Int, what: String) throws -> [UInt8] {
        guard offset >= 0, count >= 0, offset + count <= size else {
            throw QSTError.file(path, "truncated: \(what) needs bytes \(offset)..<\(offset + count) of \(size)")
        }
        var out = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = out.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, count - done, off_t(offset + done)) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else {
                throw QSTError.file(path, "read failed at \(offset + done): \(String(cString: strerror(errno)))")
            }
            done += n
        }
        return out
    }
}

private extension Array where Element == UInt8 {
    func u32(_ at: Int) -> UInt32 { (0..<4).reduce(UInt32(0)) { $0 | UInt32(self[at + $1]) << (8 * UInt32($1)) } }
    func u64(_ at: Int) -> UInt64 { (0..<8).reduce(UInt64(0)) { $0 | UInt64(self[at + $1]) << (8 * UInt64($1)) } }
}
