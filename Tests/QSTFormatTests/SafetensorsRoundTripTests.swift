import XCTest
@testable import QSTFormat

final class SafetensorsRoundTripTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws { dir = try STFiles.makeTempDir("rt") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    /// One tensor of every safetensors dtype, plus a scalar and an empty tensor.
    func sampleTensors() -> [SafetensorsTensorData] {
        var rng = STRandom(seed: 7)
        var out: [SafetensorsTensorData] = []
        for dtype in DType.allCases where dtype != .nf4 {
            let size = dtype.byteSize!
            var bytes = rng.bytes(6 * size)
            if dtype == .bool { bytes = bytes.map { $0 & 1 } }
            out.append(
                SafetensorsTensorData(
                    name: "t.\(dtype.rawValue.lowercased())", dtype: dtype, shape: [2, 3], bytes: bytes))
        }
        out.append(SafetensorsTensorData(name: "scalar", dtype: .f32, shape: [], bytes: rng.bytes(4)))
        out.append(SafetensorsTensorData(name: "empty", dtype: .bf16, shape: [0, 5], bytes: []))
        out.append(SafetensorsTensorData(name: "ünïcode \"quoted\" \\ name", dtype: .u8, shape: [3], bytes: [1, 2, 3]))
        return out
    }

    func testWriterReaderRoundTripEveryDtype() throws {
        let tensors = sampleTensors()
        let meta = ["format": "pt", "note": "tab\there \"q\" \\ é\n", "empty": ""]
        let path = dir + "/rt.safetensors"
        try SafetensorsWriter.write(to: path, tensors: tensors, metadata: meta)
        let f = try SafetensorsFile(path: path)
        XCTAssertEqual(f.metadata, meta)
        XCTAssertEqual(f.orderedNames, tensors.map(\.name), "data must follow the given order")
        XCTAssertEqual(f.tensors.count, tensors.count)
        for t in tensors {
            let info = try f.info(t.name)
            XCTAssertEqual(info.dtype, t.dtype)
            XCTAssertEqual(info.shape, t.shape)
            XCTAssertEqual(info.byteCount, t.bytes.count)
            XCTAssertEqual(Array(try f.rawBytes(t.name)), t.bytes, t.name)
            if t.dtype.isFloat {
                XCTAssertEqual(
                    try f.floats(t.name).map(\.bitPattern), Self.referenceFloats(t).map(\.bitPattern), t.name)
            }
            if t.dtype.isInteger || t.dtype == .bool {
                XCTAssertEqual(try f.integers(t.name), Self.referenceIntegers(t), t.name)
            }
        }
    }

    /// Decodes with the independent reference, not FloatConversion.
    static func referenceFloats(_ t: SafetensorsTensorData) -> [Float] {
        let b = t.bytes
        switch t.dtype {
        case .f32: return stride(from: 0, to: b.count, by: 4).map { Float(bitPattern: le(b, $0, 4)) }
        case .f64: return stride(from: 0, to: b.count, by: 8).map { Float(Double(bitPattern: le(b, $0, 8))) }
        case .f16, .bf16:
            let format = t.dtype == .f16 ? FloatReference.f16 : FloatReference.bf16
            return stride(from: 0, to: b.count, by: 2).map { i -> Float in
                let h: UInt16 = le(b, i, 2)
                // NaN payloads are compared by bits elsewhere; here pick the widened bits.
                if FloatReference.isNaNPattern(h, format) {
                    return t.dtype == .bf16
                        ? Float(bitPattern: UInt32(h) << 16)
                        : Float(bitPattern: UInt32(h & 0x8000) << 16 | 0x7f80_0000 | UInt32(h & 0x3ff) << 13)
                }
                return Float(FloatReference.value(h, format))
            }
        default: return []
        }
    }

    static func referenceIntegers(_ t: SafetensorsTensorData) -> [Int64] {
        let size = t.dtype.byteSize!
        let signed = [.i8, .i16, .i32, .i64].contains(t.dtype)
        return stride(from: 0, to: t.bytes.count, by: size).map { i in
            let u: UInt64 = le(t.bytes, i, size)
            let shift = UInt64(64 - 8 * size)
            return signed ? Int64(bitPattern: u << shift) >> Int64(shift) : Int64(bitPattern: u)
        }
    }

    static func le<T: FixedWidthInteger>(_ b: [UInt8], _ at: Int, _ n: Int) -> T {
        var v: UInt64 = 0
        for k in 0..<n { v |= UInt64(b[at + k]) << (8 * UInt64(k)) }
        return T(truncatingIfNeeded: v)
    }

    /// Checks the layout against the spec with Foundation's JSON parser: LE length,
    /// header padded with spaces to 8-byte alignment, offsets back to back.
    func testFileLayoutFollowsSpec() throws {
        let tensors = sampleTensors().filter { !$0.name.hasPrefix("ü") }
        let path = dir + "/layout.safetensors"
        try SafetensorsWriter.write(to: path, tensors: tensors, metadata: ["a": "b"])
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let n: UInt64 = Self.le(bytes, 0, 8)
        XCTAssertEqual((8 + Int(n)) % 8, 0)
        let headerBytes = Array(bytes[8..<(8 + Int(n))])
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(headerBytes)) as? [String: Any])
        XCTAssertEqual(json["__metadata__"] as? [String: String], ["a": "b"])
        var cursor = 0
        for t in tensors {
            let entry = try XCTUnwrap(json[t.name] as? [String: Any], t.name)
            XCTAssertEqual(entry["dtype"] as? String, t.dtype.rawValue)
            XCTAssertEqual(entry["shape"] as? [Int], t.shape)
            XCTAssertEqual(entry["data_offsets"] as? [Int], [cursor, cursor + t.bytes.count])
            XCTAssertEqual(Array(bytes[(8 + Int(n) + cursor)...].prefix(t.bytes.count)), t.bytes)
            cursor += t.bytes.count
        }
        XCTAssertEqual(bytes.count, 8 + Int(n) + cursor)
    }

    func testOutputIsDeterministic() throws {
        let tensors = sampleTensors()
        let meta = ["z": "1", "a": "2", "m": "3"]
        try SafetensorsWriter.write(to: dir + "/a.safetensors", tensors: tensors, metadata: meta)
        try SafetensorsWriter.write(to: dir + "/b.safetensors", tensors: tensors, metadata: meta)
        let a = try Data(contentsOf: URL(fileURLWithPath: dir + "/a.safetensors"))
        let b = try Data(contentsOf: URL(fileURLWithPath: dir + "/b.safetensors"))
        XCTAssertEqual(a, b)
        try SafetensorsWriter.write(to: dir + "/c.safetensors", tensors: tensors.reversed(), metadata: meta)
        let c = try SafetensorsFile(path: dir + "/c.safetensors")
        XCTAssertEqual(c.orderedNames, tensors.reversed().map(\.name))
    }

    func testZeroCopyF32ViewPointsIntoTheMapping() throws {
        let values: [Float] = [1.5, -2, 3.25, .infinity]
        let path = dir + "/view.safetensors"
        try SafetensorsWriter.write(
            to: path, tensors: [try SafetensorsTensorData(name: "w", shape: [4], floats: values)])
        let f = try SafetensorsFile(path: path)
        let view = try f.f32Buffer("w")
        XCTAssertEqual(UnsafeRawPointer(view.baseAddress), f.mapped.base + (try f.info("w")).dataOffset)
        XCTAssertEqual(Array(view), values)
        try f.withF32View("w") { XCTAssertEqual($0.baseAddress, view.baseAddress) }
        stExpectError([path, "tensor 'w'", "expected I32"]) { _ = try f.typedBuffer("w", as: Int32.self, dtype: .i32) }
    }

    /// Tensors at odd offsets cannot be viewed in place; conversions must still work.
    func testUnalignedTensorsAreCopied() throws {
        let one: Float = 1, half = FloatConversion.f32ToF16(0.5)
        let data: [UInt8] = [7] + withUnsafeBytes(of: one) { Array($0) } + withUnsafeBytes(of: half) { Array($0) }
        let header =
            "{"
            + [
                STFiles.entry("pad", "U8", [1], 0, 1), STFiles.entry("w", "F32", [1], 1, 5),
                STFiles.entry("h", "F16", [1], 5, 7),
            ].joined(separator: ",") + "}"
        // Header length 8k - 8 + ... : make the data section start on an 8-byte boundary.
        let padded = header + String(repeating: " ", count: (8 - (8 + header.utf8.count) % 8) % 8)
        let path = dir + "/unaligned.safetensors"
        try STFiles.write(STFiles.raw(header: padded, data: data), to: path)
        let f = try SafetensorsFile(path: path)
        stExpectError([path, "tensor 'w'", "aligned"]) { _ = try f.f32Buffer("w") }
        XCTAssertEqual(try f.floats("w"), [1])
        XCTAssertEqual(try f.withF32View("w") { Array($0) }, [1])
        XCTAssertEqual(try f.floats("h"), [0.5])
        XCTAssertEqual(try f.copyElements("w", as: Float.self), [1])
    }

    func testWriterRejectsInconsistentInput() throws {
        let path = dir + "/bad.safetensors"
        stExpectError([path, "tensor 'w'", "needs 8"]) {
            try SafetensorsWriter.write(
                to: path, tensors: [SafetensorsTensorData(name: "w", dtype: .f32, shape: [2], bytes: [0, 0, 0, 0])])
        }
        let w = SafetensorsTensorData(name: "w", dtype: .u8, shape: [1], bytes: [0])
        stExpectError([path, "tensor 'w'", "duplicate"]) { try SafetensorsWriter.write(to: path, tensors: [w, w]) }
        stExpectError([path, "tensor 'q'", "NF4"]) {
            try SafetensorsWriter.write(
                to: path, tensors: [SafetensorsTensorData(name: "q", dtype: .nf4, shape: [2], bytes: [0])])
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: path), "a rejected write must leave nothing behind")
    }
}
