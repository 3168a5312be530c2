import Foundation

/// One tensor held by a section of a `.qst4` header (Formats/QST4.md §9): a single byte range of the
/// data section, F32/F16/BF16 values in row-major order, with its CRC-32C.
public struct QST4SectionTensor: Codable, Sendable, Equatable {
    public var name: String
    public var dtype: DType
    public var shape: [Int]
    public var offset: Int
    public var length: Int
    public var crc32c: UInt32

    public init(name: String, dtype: DType, shape: [Int], offset: Int, length: Int, crc32c: UInt32) {
        self.name = name; self.dtype = dtype; self.shape = shape; self.offset = offset; self.length = length
        self.crc32c = crc32c
    }

    public var elementCount: Int { shape.reduce(1, *) }
}

/// A header section that owns bytes of the data section (`sections.NAME` with `data` and `tensors`);
/// every other member of the section object is kept in `fields` untouched.
public struct QST4DataSection: Sendable, Equatable {
    public static let dataKey = "data"
    public static let tensorsKey = "tensors"

    public var name: String
    /// The whole range the section owns (every tensor lies inside it).
    public var data: ByteRange
    public var tensors: [QST4SectionTensor]
    public var fields: [String: JSONAny]

    public init(name: String, data: ByteRange, tensors: [QST4SectionTensor], fields: [String: JSONAny]) {
        self.name = name; self.data = data; self.tensors = tensors; self.fields = fields
    }

    /// The section as it appears in the header.
    public func json() throws -> JSONAny {
        var obj = fields
        obj[Self.dataKey] = try JSONAny(encoding: data)
        obj[Self.tensorsKey] = try JSONAny(encoding: tensors)
        return .object(obj)
    }

    public func tensor(_ name: String) -> QST4SectionTensor? { tensors.first { $0.name == name } }
}

extension JSONAny {
    /// Any Codable value as a JSONAny tree (through its JSON text).
    public init<T: Encodable>(encoding value: T) throws {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        self = try JSONDecoder().decode(JSONAny.self, from: try e.encode(value))
    }

    /// Decodes the tree as `T`; `context` names the place in errors.
    public func decode<T: Decodable>(_ type: T.Type, context: String) throws -> T {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        do { return try JSONDecoder().decode(T.self, from: try e.encode(self)) } catch {
            throw QSTError("\(context): \(QST4Container.describe(error))")
        }
    }

    public var objectMembers: [String: JSONAny]? { if case .object(let o) = self { return o }; return nil }
    public var stringMember: String? { if case .string(let s) = self { return s }; return nil }
}

extension QST4Container {
    /// The raw JSON of `sections.NAME`, or nil.
    public func section(_ name: String) -> JSONAny? { header.sections[name] }

    /// `sections.NAME` as a data section, validated against the file's layout; nil if absent.
    /// Checks: tensors of a float dtype whose lengths match their shapes, 64-byte aligned, inside the
    /// section's `data` range, not overlapping each other; `data` inside the data section and after every
    /// base tensor part and embedded file.
    public func dataSection(_ name: String) throws -> QST4DataSection? {
        guard let raw = header.sections[name] else { return nil }
        let ctx = "\(path): sections.\(name)"
        guard var obj = raw.objectMembers else { throw QSTError("\(ctx) is not a JSON object") }
        guard let d = obj.removeValue(forKey: QST4DataSection.dataKey) else {
            throw QSTError("\(ctx): missing field 'data'")
        }
        guard let t = obj.removeValue(forKey: QST4DataSection.tensorsKey) else {
            throw QSTError("\(ctx): missing field 'tensors'")
        }
        let data = try d.decode(ByteRange.self, context: ctx + ".data")
        let tensors = try t.decode([QST4SectionTensor].self, context: ctx + ".tensors")
        guard data.offset >= dataOffset, data.length >= 0, data.offset <= headerOffset - data.length else {
            throw QSTError("\(ctx): data range \(data.offset)+\(data.length) lies outside the data section")
        }
        let baseEnd = baseDataEnd
        guard data.offset >= baseEnd || data.length == 0 else {
            throw QSTError(
                "\(ctx): data range starts at \(data.offset), inside the base's tensors (which end at \(baseEnd))")
        }
        var seen = Set<String>()
        var spans: [(Int, Int, String)] = []
        for e in tensors {
            func fail(_ what: String) -> QSTError { QSTError("\(ctx): tensor '\(e.name)': \(what)") }
            guard seen.insert(e.name).inserted else { throw fail("listed twice") }
            guard [.f32, .f16, .bf16].contains(e.dtype), let size = e.dtype.byteSize else {
                throw fail("dtype \(e.dtype.rawValue) is not F32, F16 or BF16")
            }
            var n = 1
            for dim in e.shape {
                guard dim >= 0 else { throw fail("negative dimension in shape \(e.shape)") }
                let (p, o) = n.multipliedReportingOverflow(by: dim)
                guard !o else { throw fail("shape \(e.shape) overflows") }
                n = p
            }
            let (bytes, overflow) = n.multipliedReportingOverflow(by: size)
            guard !overflow, e.length == bytes else {
                throw fail(
                    "is \(e.length) bytes, expected \(overflow ? "more than fit in a 64-bit integer" : String(bytes)) for shape \(e.shape)"
                )
            }
            guard e.offset % QST4.partAlignment == 0 else { throw fail("offset \(e.offset) is not 64-byte aligned") }
            guard e.offset >= data.offset, e.offset <= data.offset + data.length - e.length else {
                throw fail("byte range lies outside the section's data range")
            }
            spans.append((e.offset, e.offset + e.length, e.name))
        }
        spans.sort { $0.0 < $1.0 }
        for i in spans.indices.dropFirst() where spans[i].0 < spans[i - 1].1 {
            throw QSTError("\(ctx): tensor '\(spans[i].2)' overlaps tensor '\(spans[i - 1].2)'")
        }
        return QST4DataSection(name: name, data: data, tensors: tensors, fields: obj)
    }

    /// End of the last base tensor part or embedded file (sections' data starts after it).
    public var baseDataEnd: Int {
        var end = dataOffset
        for f in header.files { end = max(end, f.offset + f.length) }
        for t in header.tensors { for r in t.parts.values { end = max(end, r.offset + r.length) } }
        return end
    }

    public func bytes(of t: QST4SectionTensor) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: file.base + t.offset, count: t.length)
    }

    /// A section tensor as float32 values into `dst` (exactly `elementCount` of them).
    public func decode(_ t: QST4SectionTensor, into dst: UnsafeMutablePointer<Float>) throws {
        let p = file.base + t.offset, n = t.elementCount
        switch t.dtype {
        case .f32: dst.update(from: p.assumingMemoryBound(to: Float.self), count: n)
        case .bf16: FloatConversion.bf16ToF32(p.assumingMemoryBound(to: UInt16.self), dst, n)
        case .f16: FloatConversion.f16ToF32(p.assumingMemoryBound(to: UInt16.self), dst, n)
        default:
            throw QSTError.tensor(path, t.name, "section tensor dtype \(t.dtype.rawValue) cannot be decoded to float")
        }
    }

    /// CRC-32C of every tensor of the section; one line per mismatch.
    public func verify(_ s: QST4DataSection) -> [String] {
        s.tensors.compactMap { t in
            let crc = Checksums.crc32c(bytes(of: t))
            return crc == t.crc32c
                ? nil
                : "\(path): sections.\(s.name): tensor '\(t.name)': checksum mismatch (stored \(String(t.crc32c, radix: 16)), computed \(String(crc, radix: 16)))"
        }
    }
}
