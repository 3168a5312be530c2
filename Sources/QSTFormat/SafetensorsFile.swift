import Foundation

/// One memory-mapped safetensors file. The header is validated on open; tensor
/// bytes are only read when asked for, straight from the mapping. Views returned
/// by this class point into the mapping and stay valid while the object lives.
/// Assumes a little-endian host, as safetensors data is little-endian.
public final class SafetensorsFile: Sendable {
    public let path: String
    public let mapped: MappedFile
    public let header: SafetensorsHeader
    public let tensors: [String: SafetensorsTensorInfo]
    /// Tensor names in data-offset order (the order a sequential reader wants).
    public let orderedNames: [String]

    public var metadata: [String: String] { header.metadata }

    public init(path: String) throws {
        self.path = path
        mapped = try MappedFile(path: path)
        header = try SafetensorsHeader(file: mapped.bytes, path: path)
        var byName: [String: SafetensorsTensorInfo] = [:]
        for t in header.tensors { byName[t.name] = t }
        tensors = byName
        orderedNames = header.tensors.map(\.name)
    }

    public func info(_ name: String) throws -> SafetensorsTensorInfo {
        guard let t = tensors[name] else {
            throw QSTError.tensor(path, name, "no such tensor in this file", kind: .tensorNotFound)
        }
        return t
    }

    /// The tensor's bytes inside the mapping (zero-copy).
    public func rawBytes(_ name: String) throws -> UnsafeRawBufferPointer {
        let t = try info(name)
        return UnsafeRawBufferPointer(start: mapped.base + t.dataOffset, count: t.byteCount)
    }

    /// Zero-copy typed view of the mapped bytes. `T` must have the dtype's element
    /// size, and the data must sit at an address aligned for `T` (offsets in a
    /// safetensors file are not guaranteed to be; use `copyElements` then).
    public func typedBuffer<T: BitwiseCopyable>(_ name: String, as type: T.Type, dtype expected: DType) throws
        -> UnsafeBufferPointer<T>
    {
        let t = try info(name)
        guard t.dtype == expected else {
            throw QSTError.tensor(
                path, name, "dtype is \(t.dtype.rawValue), expected \(expected.rawValue)", kind: .dtypeMismatch)
        }
        guard t.dtype.byteSize == MemoryLayout<T>.stride else {
            throw QSTError.tensor(
                path, name, "dtype \(t.dtype.rawValue) does not match a \(MemoryLayout<T>.stride)-byte element type",
                kind: .dtypeMismatch)
        }
        let p = mapped.base + t.dataOffset
        guard Int(bitPattern: p) % MemoryLayout<T>.alignment == 0 else {
            throw QSTError.tensor(
                path, name, "data at file offset \(t.dataOffset) is not \(MemoryLayout<T>.alignment)-byte aligned",
                kind: .misalignedData)
        }
        return UnsafeBufferPointer(start: p.bindMemory(to: T.self, capacity: t.elementCount), count: t.elementCount)
    }

    /// Zero-copy view of an F32 tensor (see `typedBuffer` for the alignment rule).
    public func f32Buffer(_ name: String) throws -> UnsafeBufferPointer<Float> {
        try typedBuffer(name, as: Float.self, dtype: .f32)
    }

    /// Calls `body` with the tensor as F32: the mapped bytes themselves when the
    /// tensor is aligned F32, otherwise a temporary converted copy.
    public func withF32View<R>(_ name: String, _ body: (UnsafeBufferPointer<Float>) throws -> R) throws -> R {
        let t = try info(name)
        if t.dtype == .f32, Int(bitPattern: mapped.base + t.dataOffset) % MemoryLayout<Float>.alignment == 0 {
            return try body(try f32Buffer(name))
        }
        let copy = try floats(name)
        return try copy.withUnsafeBufferPointer { try body($0) }
    }

    /// Copies the elements into a new array, whatever the alignment. The dtype's
    /// element size must equal `T`'s size; bits are copied as they are.
    public func copyElements<T: BitwiseCopyable>(_ name: String, as type: T.Type) throws -> [T] {
        let t = try info(name)
        guard t.dtype.byteSize == MemoryLayout<T>.stride else {
            throw QSTError.tensor(
                path, name, "dtype \(t.dtype.rawValue) does not match a \(MemoryLayout<T>.stride)-byte element type",
                kind: .dtypeMismatch)
        }
        let src = try rawBytes(name)
        return [T](unsafeUninitializedCapacity: t.elementCount) { buf, initialized in
            if let base = buf.baseAddress, let s = src.baseAddress, !src.isEmpty {
                UnsafeMutableRawPointer(base).copyMemory(from: s, byteCount: src.count)
            }
            initialized = t.elementCount
        }
    }

    /// Any float dtype as F32: F32 copied, F16/BF16 widened exactly, F64 rounded to nearest.
    public func floats(_ name: String) throws -> [Float] {
        let t = try info(name)
        var out = [Float](repeating: 0, count: t.elementCount)
        try out.withUnsafeMutableBufferPointer { try floats(name, into: $0) }
        return out
    }

    /// Like `floats(_:)` but into a caller-owned buffer of exactly `elementCount` floats.
    public func floats(_ name: String, into dst: UnsafeMutableBufferPointer<Float>) throws {
        let t = try info(name)
        guard t.dtype.isFloat else {
            throw QSTError.tensor(path, name, "dtype \(t.dtype.rawValue) is not a float type", kind: .dtypeMismatch)
        }
        guard dst.count == t.elementCount else {
            throw QSTError.tensor(
                path, name, "destination holds \(dst.count) floats, tensor has \(t.elementCount)",
                kind: .bufferSizeMismatch)
        }
        guard let d = dst.baseAddress, t.elementCount > 0 else { return }
        let src = mapped.base + t.dataOffset
        let n = t.elementCount
        switch t.dtype {
        case .f32:
            UnsafeMutableRawPointer(d).copyMemory(from: src, byteCount: t.byteCount)
        case .f64:
            for i in 0..<n { d[i] = Float(src.loadUnaligned(fromByteOffset: 8 * i, as: Double.self)) }
        case .f16, .bf16:
            let isF16 = t.dtype == .f16
            func convert(_ s: UnsafePointer<UInt16>) {
                if isF16 { FloatConversion.f16ToF32(s, d, n) } else { FloatConversion.bf16ToF32(s, d, n) }
            }
            if Int(bitPattern: src) % 2 == 0 {
                convert(src.bindMemory(to: UInt16.self, capacity: n))
            } else {
                let aligned = try copyElements(name, as: UInt16.self)
                aligned.withUnsafeBufferPointer { if let a = $0.baseAddress { convert(a) } }
            }
        default:
            break
        }
    }

    /// Any integer or BOOL dtype widened to Int64. U64 values above Int64.max are an error.
    public func integers(_ name: String) throws -> [Int64] {
        let t = try info(name)
        let raw = try rawBytes(name)
        let n = t.elementCount
        func load<T: FixedWidthInteger & BitwiseCopyable>(_: T.Type) -> [Int64] {
            (0..<n).map {
                Int64(truncatingIfNeeded: raw.loadUnaligned(fromByteOffset: $0 * MemoryLayout<T>.stride, as: T.self))
            }
        }
        switch t.dtype {
        case .i64: return load(Int64.self)
        case .i32: return load(Int32.self)
        case .i16: return load(Int16.self)
        case .i8: return load(Int8.self)
        case .u8, .bool: return load(UInt8.self)
        case .u16: return load(UInt16.self)
        case .u32: return load(UInt32.self)
        case .u64:
            return try (0..<n).map {
                let v = raw.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self)
                guard let x = Int64(exactly: v) else {
                    throw QSTError.tensor(
                        path, name, "U64 element \($0) = \(v) does not fit in Int64", kind: .valueOutOfRange)
                }
                return x
            }
        default:
            throw QSTError.tensor(path, name, "dtype \(t.dtype.rawValue) is not an integer type", kind: .dtypeMismatch)
        }
    }

    /// Page-cache hints for one tensor's bytes: prefetch before use, drop after.
    public func advise(_ name: String, willNeed: Bool) throws {
        let t = try info(name)
        mapped.advise(offset: t.dataOffset, length: t.byteCount, willNeed: willNeed)
    }
}
