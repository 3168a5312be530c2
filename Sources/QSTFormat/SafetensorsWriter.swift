/// One tensor to be written: its raw little-endian bytes and how to read them.
public struct SafetensorsTensorData: Sendable, Equatable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    public let bytes: [UInt8]

    public init(name: String, dtype: DType, shape: [Int], bytes: [UInt8]) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.bytes = bytes
    }

    /// Encodes F32 values as F32, F16, BF16 (round to nearest even) or F64 (exact).
    public init(name: String, shape: [Int], floats: [Float], dtype: DType = .f32) throws {
        let encoded: [UInt8]
        switch dtype {
        case .f32: encoded = floats.withUnsafeBytes { Array($0) }
        case .f64: encoded = floats.map(Double.init).withUnsafeBytes { Array($0) }
        case .f16, .bf16: encoded = FloatConversion.fromF32(floats, to: dtype).withUnsafeBytes { Array($0) }
        default: throw QSTError("tensor '\(name)': cannot encode floats as \(dtype.rawValue)")
        }
        self.init(name: name, dtype: dtype, shape: shape, bytes: encoded)
    }
}

/// A tensor to be written from memory owned elsewhere (valid for the duration of the write).
public struct SafetensorsTensorView {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    public let bytes: UnsafeRawBufferPointer

    public init(name: String, dtype: DType, shape: [Int], bytes: UnsafeRawBufferPointer) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.bytes = bytes
    }
}

/// Writes safetensors files byte-for-byte deterministically: the same tensors and
/// metadata always give the same file. Data is laid out in the order given; the
/// header lists `__metadata__` first, then tensors sorted by name, and is padded
/// with spaces so the data section starts on an 8-byte boundary.
public enum SafetensorsWriter {
    public static func write(to path: String, tensors: [SafetensorsTensorData], metadata: [String: String] = [:]) throws
    {
        let header = try headerBytes(path: path, tensors: tensors, metadata: metadata)
        let out = try AtomicFileWriter(path: path)
        try out.write(header)
        for t in tensors where !t.bytes.isEmpty { try out.write(t.bytes) }
        try out.commit()
    }

    /// The same file as `write(to:tensors:metadata:)`, written straight from memory the caller keeps alive
    /// for the call: large checkpoints (a 70B side network's AdamW moments are 2 GiB) need no second copy.
    public static func write(to path: String, views: [SafetensorsTensorView], metadata: [String: String] = [:]) throws {
        let header = try headerBytes(
            path: path, entries: views.map { ($0.name, $0.dtype, $0.shape, $0.bytes.count) },
            metadata: metadata)
        let out = try AtomicFileWriter(path: path)
        try out.write(header)
        for v in views where v.bytes.count > 0 { try out.write(v.bytes) }
        try out.commit()
    }

    /// The 8-byte length prefix plus the padded JSON header for `tensors` laid out
    /// back to back in the given order. `path` only labels error messages.
    public static func headerBytes(path: String, tensors: [SafetensorsTensorData], metadata: [String: String]) throws
        -> [UInt8]
    {
        try headerBytes(
            path: path, entries: tensors.map { ($0.name, $0.dtype, $0.shape, $0.bytes.count) }, metadata: metadata)
    }

    static func headerBytes(
        path: String, entries tensors: [(name: String, dtype: DType, shape: [Int], byteCount: Int)],
        metadata: [String: String]
    ) throws -> [UInt8] {
        var offsets: [String: (Int, Int)] = [:]
        var cursor = 0
        for t in tensors {
            try validate(name: t.name, dtype: t.dtype, shape: t.shape, byteCount: t.byteCount, path: path)
            guard offsets[t.name] == nil else { throw QSTError.tensor(path, t.name, "duplicate tensor name") }
            offsets[t.name] = (cursor, cursor + t.byteCount)
            cursor += t.byteCount
        }

        var entries: [String] = []
        if !metadata.isEmpty {
            let fields = metadata.keys.sorted().map {
                "\(JSONValue.quoted($0)):\(JSONValue.quoted(metadata[$0] ?? ""))"
            }
            entries.append("\"__metadata__\":{" + fields.joined(separator: ",") + "}")
        }
        for t in tensors.sorted(by: { $0.name < $1.name }) {
            let (begin, end) = offsets[t.name] ?? (0, 0)
            let shape = t.shape.map(String.init).joined(separator: ",")
            entries.append(
                "\(JSONValue.quoted(t.name)):{\"dtype\":\"\(t.dtype.rawValue)\",\"shape\":[\(shape)],\"data_offsets\":[\(begin),\(end)]}"
            )
        }
        var json = Array(("{" + entries.joined(separator: ",") + "}").utf8)
        let padding = (8 - (8 + json.count) % 8) % 8
        json.append(contentsOf: repeatElement(UInt8(ascii: " "), count: padding))

        var out = withUnsafeBytes(of: UInt64(json.count).littleEndian) { Array($0) }
        out.append(contentsOf: json)
        return out
    }

    static func validate(name: String, dtype: DType, shape: [Int], byteCount: Int, path: String) throws {
        func fail(_ what: String) -> QSTError { QSTError.tensor(path, name, what) }
        guard name != "__metadata__" else { throw fail("the name __metadata__ is reserved") }
        guard let size = dtype.byteSize else { throw fail("dtype \(dtype.rawValue) cannot be stored in safetensors") }
        var count = 1
        for d in shape {
            guard d >= 0 else { throw fail("negative dimension in shape \(shape)") }
            let (p, overflow) = count.multipliedReportingOverflow(by: d)
            guard !overflow else { throw fail("shape \(shape) overflows") }
            count = p
        }
        let (bytes, overflow) = count.multipliedReportingOverflow(by: size)
        guard !overflow, bytes == byteCount else {
            throw fail(
                "has \(byteCount) bytes but shape \(shape) of \(dtype.rawValue) needs \(overflow ? "too many" : String(bytes))"
            )
        }
    }
}
