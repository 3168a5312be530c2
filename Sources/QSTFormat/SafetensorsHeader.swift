/// The validated header of a safetensors file: 8-byte little-endian length, a JSON
/// object of tensor entries (and optional `__metadata__`), then the data section.
///
/// Every check runs on the header bytes alone, before any tensor data is touched,
/// so a hostile file is rejected with a message instead of a crash or a stray read.
public struct SafetensorsHeader: Sendable {
    /// The safetensors reference implementation refuses headers above 100 MB.
    public static let maxHeaderLength: UInt64 = 100_000_000

    /// Tensors sorted by data offset.
    public let tensors: [SafetensorsTensorInfo]
    public let metadata: [String: String]
    public let headerLength: Int
    /// Absolute offset of the data section (8 + headerLength).
    public let dataStart: Int

    public init(file bytes: UnsafeRawBufferPointer, path: String) throws {
        guard bytes.count >= 8 else {
            throw QSTError.file(
                path, "file is \(bytes.count) bytes, too short for the 8-byte header length of a safetensors file",
                kind: .headerTooSmall)
        }
        let n = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        guard n <= Self.maxHeaderLength else {
            throw QSTError.file(
                path, "header length \(n) bytes exceeds the 100 MB limit (corrupt or not a safetensors file)",
                kind: .headerTooLarge)
        }
        guard n <= UInt64(bytes.count - 8) else {
            throw QSTError.file(
                path,
                "header length \(n) bytes exceeds the \(bytes.count - 8) bytes that follow the length field (truncated file?)",
                kind: .invalidHeaderLength)
        }
        headerLength = Int(n)
        dataStart = 8 + headerLength
        let headerBytes = UnsafeRawBufferPointer(rebasing: bytes[8..<dataStart])
        guard String(validating: headerBytes, as: UTF8.self) != nil else {
            throw QSTError.file(path, "header is not valid UTF-8", kind: .invalidHeaderEncoding)
        }
        let json = try JSONValue.parse(headerBytes, context: "\(path): header")
        guard let members = json.objectValue else {
            throw QSTError.file(path, "header is \(json.kindName), expected a JSON object", kind: .invalidHeader)
        }

        let dataSize = bytes.count - dataStart
        var seen = Set<String>()
        var metadata: [String: String] = [:]
        var spans: [(info: SafetensorsTensorInfo, begin: Int, end: Int)] = []
        for (name, value) in members {
            // JSONSerialization would keep only one of two equal keys; a second
            // entry for the same tensor almost certainly means a broken writer.
            guard seen.insert(name).inserted else {
                if name == "__metadata__" {
                    throw QSTError.file(path, "header has more than one __metadata__ field", kind: .invalidHeader)
                }
                throw QSTError.tensor(path, name, "duplicate tensor name in header", kind: .duplicateTensor)
            }
            if name == "__metadata__" {
                metadata = try Self.parseMetadata(value, path: path)
                continue
            }
            let entry = try Self.parseEntry(
                name: name, value: value, path: path, dataStart: dataStart, dataSize: dataSize)
            spans.append(entry)
        }
        self.metadata = metadata

        // The spec requires the spans to tile the data section exactly: no overlap,
        // no unindexed hole, no trailing bytes. Zero-byte tensors sort first at a tie.
        spans.sort { ($0.begin, $0.end, $0.info.name) < ($1.begin, $1.end, $1.info.name) }
        var covered = 0
        var lastName: String?
        for s in spans {
            if s.begin < covered, let prev = lastName {
                throw QSTError.tensor(
                    path, s.info.name,
                    "data_offsets [\(s.begin), \(s.end)] overlap tensor '\(prev)' which ends at \(covered)",
                    kind: .invalidOffset)
            }
            if s.begin > covered {
                let after = lastName.map { "after tensor '\($0)'" } ?? "at the start of the data section"
                throw QSTError.tensor(
                    path, s.info.name,
                    "data_offsets [\(s.begin), \(s.end)] leave bytes [\(covered), \(s.begin)) \(after) unindexed (hole in the data section)",
                    kind: .invalidOffset)
            }
            if s.end > covered || lastName == nil { covered = s.end; lastName = s.info.name }
        }
        if covered != dataSize {
            let after = lastName.map { "after tensor '\($0)'" } ?? "(no tensors)"
            throw QSTError.file(
                path, "data section has \(dataSize - covered) trailing bytes \(after) not covered by any tensor",
                kind: .invalidOffset)
        }
        tensors = spans.map(\.info)
    }

    static func parseMetadata(_ value: JSONValue, path: String) throws -> [String: String] {
        guard let members = value.objectValue else {
            throw QSTError.file(
                path, "__metadata__ is \(value.kindName), expected an object of strings", kind: .invalidHeader)
        }
        var out: [String: String] = [:]
        for (k, v) in members {
            guard let s = v.stringValue else {
                throw QSTError.file(
                    path, "__metadata__ field '\(k)' is \(v.kindName), expected a string", kind: .invalidHeader)
            }
            guard out.updateValue(s, forKey: k) == nil else {
                throw QSTError.file(path, "__metadata__ field '\(k)' appears more than once", kind: .invalidHeader)
            }
        }
        return out
    }

    static func parseEntry(name: String, value: JSONValue, path: String, dataStart: Int, dataSize: Int) throws
        -> (info: SafetensorsTensorInfo, begin: Int, end: Int)
    {
        func fail(_ what: String, _ kind: QSTError.Kind = .invalidTensorInfo) -> QSTError {
            QSTError.tensor(path, name, what, kind: kind)
        }
        guard value.objectValue != nil else {
            throw fail("entry is \(value.kindName), expected an object with dtype, shape and data_offsets")
        }
        guard let dtypeValue = value["dtype"] else { throw fail("missing 'dtype'") }
        guard let dtypeName = dtypeValue.stringValue else {
            throw fail("'dtype' is \(dtypeValue.kindName), expected a string")
        }
        guard let dtype = DType(rawValue: dtypeName), let elementSize = dtype.byteSize else {
            throw fail("unknown dtype '\(dtypeName)'")
        }
        guard let shapeValue = value["shape"] else { throw fail("missing 'shape'") }
        guard let dims = shapeValue.arrayValue else {
            throw fail("'shape' is \(shapeValue.kindName), expected an array")
        }
        var shape: [Int] = []
        for (i, d) in dims.enumerated() {
            guard let n = d.exactInt, n >= 0 else {
                throw fail("shape dimension \(i) is \(Self.describe(d)), expected a non-negative integer")
            }
            shape.append(n)
        }
        guard let offsetsValue = value["data_offsets"] else { throw fail("missing 'data_offsets'") }
        guard let offsets = offsetsValue.arrayValue, offsets.count == 2 else {
            throw fail("'data_offsets' must be an array of two integers [begin, end]")
        }
        guard let begin = offsets[0].exactInt, begin >= 0, let end = offsets[1].exactInt, end >= 0 else {
            throw fail(
                "'data_offsets' [\(Self.describe(offsets[0])), \(Self.describe(offsets[1]))] must be non-negative integers"
            )
        }

        var count = 1
        for d in shape {
            let (p, overflow) = count.multipliedReportingOverflow(by: d)
            guard !overflow else {
                throw fail("shape \(shape) has more elements than fit in a 64-bit integer", .validationOverflow)
            }
            count = p
        }
        let (byteCount, overflow) = count.multipliedReportingOverflow(by: elementSize)
        guard !overflow else {
            throw fail(
                "shape \(shape) of \(dtypeName) needs more bytes than fit in a 64-bit integer", .validationOverflow)
        }

        guard begin <= end else { throw fail("data_offsets [\(begin), \(end)] begin after they end", .invalidOffset) }
        guard end <= dataSize else {
            throw fail(
                "data_offsets [\(begin), \(end)] lie outside the data section of \(dataSize) bytes", .invalidOffset)
        }
        guard end - begin == byteCount else {
            throw fail(
                "data_offsets [\(begin), \(end)] span \(end - begin) bytes but shape \(shape) of \(dtypeName) needs \(byteCount)",
                .invalidOffset)
        }
        let info = SafetensorsTensorInfo(
            name: name, dtype: dtype, shape: shape, dataOffset: dataStart + begin, byteCount: byteCount)
        return (info, begin, end)
    }

    static func describe(_ v: JSONValue) -> String {
        switch v {
        case let .number(t): return t
        case let .string(s): return JSONValue.quoted(s)
        default: return v.kindName
        }
    }
}
