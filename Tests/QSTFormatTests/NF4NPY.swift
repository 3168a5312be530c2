import Foundation
@testable import QSTFormat

/// One array read from a .npy member: dtype descriptor, shape and raw little-endian bytes.
struct NF4NPYArray {
    var descr: String
    var shape: [Int]
    var data: [UInt8]

    var count: Int { shape.reduce(1, *) }

    private func typed<T>(_ want: [String], _ type: T.Type) throws -> [T] {
        guard want.contains(descr) else { throw QSTError("npy: dtype \(descr), expected \(want[0])") }
        guard data.count == count * MemoryLayout<T>.size else {
            throw QSTError("npy: \(data.count) bytes for \(shape)")
        }
        return [T](unsafeUninitializedCapacity: count) { buf, initialized in
            data.withUnsafeBytes { raw in UnsafeMutableRawBufferPointer(buf).copyMemory(from: raw) }
            initialized = count
        }
    }
    func float32() throws -> [Float] { try typed(["<f4"], Float.self) }
    func uint8() throws -> [UInt8] { try typed(["|u1", "<u1"], UInt8.self) }
    func uint16() throws -> [UInt16] { try typed(["<u2"], UInt16.self) }
}

extension Dictionary where Key == String, Value == NF4NPYArray {
    func field(_ name: String) throws -> NF4NPYArray {
        guard let v = self[name] else { throw QSTError("npz: no array '\(name)' (have \(keys.sorted()))") }
        return v
    }
}

/// Just enough of NumPy's .npy/.npz formats for the reference harness: write a float32 vector (NPYFile),
/// read the arrays of an uncompressed .npz (what `np.savez` writes), zip64 sizes included.
enum NF4NPY {
    static func writeFloat32(_ values: [Float], to url: URL) throws {
        let w = try NPYFile.Writer(path: url.path, type: .float32, shape: [values.count])
        try w.append(values)
        try w.commit()
    }

    static func readNPY(_ b: ArraySlice<UInt8>) throws -> NF4NPYArray {
        let s = b.startIndex
        guard b.count >= 10, b[s] == 0x93, Array(b[(s + 1)..<(s + 6)]) == Array("NUMPY".utf8) else {
            throw QSTError("npy: bad magic")
        }
        let major = b[s + 6]
        let headerLen = major == 1 ? Int(b[s + 8]) | Int(b[s + 9]) << 8 : Int(le32(b, s + 8))
        let headerStart = s + (major == 1 ? 10 : 12)
        guard headerStart + headerLen <= b.endIndex else { throw QSTError("npy: truncated header") }
        let header = String(decoding: b[headerStart..<(headerStart + headerLen)], as: UTF8.self)
        guard let descr = quoted(after: "'descr':", in: header), header.contains("'fortran_order': False"),
            let open = header.range(of: "'shape': ("), let close = header[open.upperBound...].firstIndex(of: ")")
        else { throw QSTError("npy: unsupported header \(header)") }
        let shape = header[open.upperBound..<close].split(separator: ",")
            .compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        return NF4NPYArray(descr: descr, shape: shape, data: Array(b[(headerStart + headerLen)...]))
    }

    static func readNPZ(_ url: URL) throws -> [String: NF4NPYArray] {
        let z = [UInt8](try Data(contentsOf: url))
        // End of central directory: the last "PK\5\6" record.
        guard z.count >= 22,
            let eocd = stride(from: z.count - 22, through: 0, by: -1)
                .first(where: { le32(z[...], $0) == 0x0605_4b50 })
        else { throw QSTError("npz: no end of central directory") }
        let entries = Int(le16(z, eocd + 10))
        var p = Int(le32(z[...], eocd + 16))
        var out: [String: NF4NPYArray] = [:]
        for _ in 0..<entries {
            guard le32(z[...], p) == 0x0201_4b50 else { throw QSTError("npz: bad central directory entry") }
            let method = le16(z, p + 10)
            var size = UInt64(le32(z[...], p + 20))
            let nameLen = Int(le16(z, p + 28)), extraLen = Int(le16(z, p + 30)), commentLen = Int(le16(z, p + 32))
            var local = UInt64(le32(z[...], p + 42))
            let name = String(decoding: z[(p + 46)..<(p + 46 + nameLen)], as: UTF8.self)
            // zip64 extra field (id 1): the 64-bit values for the fields that read 0xffffffff.
            var e = p + 46 + nameLen
            while e + 4 <= p + 46 + nameLen + extraLen {
                let id = le16(z, e), len = Int(le16(z, e + 2))
                if id == 1 {
                    var q = e + 4
                    if le32(z[...], p + 24) == 0xffff_ffff { q += 8 }  // uncompressed size comes first
                    if size == 0xffff_ffff { size = le64(z, q); q += 8 }
                    if local == 0xffff_ffff { local = le64(z, q) }
                }
                e += 4 + len
            }
            guard method == 0 else { throw QSTError("npz: \(name) is compressed (method \(method))") }
            let l = Int(local)
            let dataStart = l + 30 + Int(le16(z, l + 26)) + Int(le16(z, l + 28))
            let arrayName = name.hasSuffix(".npy") ? String(name.dropLast(4)) : name
            out[arrayName] = try readNPY(z[dataStart..<(dataStart + Int(size))])
            p += 46 + nameLen + extraLen + commentLen
        }
        return out
    }

    private static func quoted(after key: String, in s: String) -> String? {
        guard let k = s.range(of: key) else { return nil }
        let rest = s[k.upperBound...]
        guard let a = rest.firstIndex(of: "'") else { return nil }
        let afterA = rest.index(after: a)
        guard let b = rest[afterA...].firstIndex(of: "'") else { return nil }
        return String(rest[afterA..<b])
    }

    private static func le16(_ b: [UInt8], _ i: Int) -> UInt16 { UInt16(b[i]) | UInt16(b[i + 1]) << 8 }
    private static func le32(_ b: ArraySlice<UInt8>, _ i: Int) -> UInt32 {
        UInt32(b[i]) | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2]) << 16 | UInt32(b[i + 3]) << 24
    }
    private static func le64(_ b: [UInt8], _ i: Int) -> UInt64 {
        UInt64(le32(b[...], i)) | UInt64(le32(b[...], i + 4)) << 32
    }
}
