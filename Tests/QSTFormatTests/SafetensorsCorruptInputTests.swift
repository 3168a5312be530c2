import XCTest
@testable import QSTFormat

/// One hand-made file per defect. Each must be rejected on open with a one-line
/// message naming the file and the tensor or field at fault.
final class SafetensorsCorruptInputTests: XCTestCase {
    struct Case {
        let label: String
        let bytes: [UInt8]
        let fragments: [String]
    }

    static func header(_ entries: String...) -> String { "{" + entries.joined(separator: ",") + "}" }
    static let e = STFiles.entry

    static let cases: [Case] = {
        let four = [UInt8](repeating: 0, count: 4)
        let eight = [UInt8](repeating: 0, count: 8)
        let twelve = [UInt8](repeating: 0, count: 12)
        func c(_ label: String, _ bytes: [UInt8], _ fragments: [String]) -> Case {
            Case(label: label, bytes: bytes, fragments: fragments)
        }
        func h(_ s: String, _ data: [UInt8] = []) -> [UInt8] { STFiles.raw(header: s, data: data) }
        let deep = "{\"w\":" + String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000) + "}"
        return [
            c("tooShort", [1, 2, 3], ["3 bytes", "too short"]),
            c("empty", [], ["0 bytes", "too short"]),
            c("lengthPastEnd", STFiles.raw(header: "{}", declaredLength: 1000), ["header length 1000", "exceeds"]),
            c("lengthOver100MB", STFiles.raw(header: "{}", declaredLength: 200_000_000), ["200000000", "100 MB"]),
            c("lengthUInt64Max", STFiles.raw(header: "{}", declaredLength: .max), ["100 MB"]),
            c("notUTF8", STFiles.raw(header: [0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]), ["UTF-8"]),
            c("truncatedJSON", h("{\"w\":{\"dtype\":\"F32\","), ["header", "invalid JSON"]),
            c("trailingGarbage", h("{} x"), ["invalid JSON", "after the top-level value"]),
            c("notAnObject", h("[1,2]"), ["header is an array", "expected a JSON object"]),
            c("entryNotObject", h("{\"w\":5}"), ["tensor 'w'", "expected an object"]),
            c(
                "missingDtype", h("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", four),
                ["tensor 'w'", "missing 'dtype'"]),
            c(
                "missingShape", h("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", four),
                ["tensor 'w'", "missing 'shape'"]),
            c(
                "missingOffsets", h("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", four),
                ["tensor 'w'", "missing 'data_offsets'"]),
            c(
                "dtypeNotString", h("{\"w\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", four),
                ["tensor 'w'", "'dtype'"]),
            c(
                "unknownDtype", h(header(e("w", "F8_E4M3", [4], 0, 4)), four),
                ["tensor 'w'", "unknown dtype 'F8_E4M3'"]),
            c("nf4NotSafetensors", h(header(e("w", "NF4", [4], 0, 4)), four), ["tensor 'w'", "NF4"]),
            c("negativeDim", h(header(e("w", "F32", [-1], 0, 4)), four), ["tensor 'w'", "shape dimension 0 is -1"]),
            c(
                "fractionalDim", h("{\"w\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,4]}}", four),
                ["tensor 'w'", "2.5"]),
            c(
                "exponentDim", h("{\"w\":{\"dtype\":\"F32\",\"shape\":[1e0],\"data_offsets\":[0,4]}}", four),
                ["tensor 'w'", "1e0"]),
            c(
                "stringDim", h("{\"w\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", four),
                ["tensor 'w'", "shape dimension 0"]),
            c(
                "shapeNotArray", h("{\"w\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,4]}}", four),
                ["tensor 'w'", "'shape'"]),
            c(
                "dimBeyondInt64",
                h("{\"w\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,4]}}", four),
                ["tensor 'w'", "99999999999999999999"]),
            c("elementCountOverflow", h(header(e("w", "F32", [1 << 62, 4], 0, 4)), four), ["tensor 'w'", "64-bit"]),
            c("byteCountOverflow", h(header(e("w", "F32", [1 << 62], 0, 4)), four), ["tensor 'w'", "64-bit"]),
            c("spanMismatch", h(header(e("w", "F32", [2], 0, 4)), four), ["tensor 'w'", "span 4 bytes", "needs 8"]),
            c(
                "offsetsOutside", h(header(e("w", "F32", [1], 0, 4))),
                ["tensor 'w'", "outside the data section of 0 bytes"]),
            c("beginAfterEnd", h(header(e("w", "F32", [1], 4, 0)), four), ["tensor 'w'", "begin after"]),
            c("negativeOffset", h(header(e("w", "F32", [1], -4, 0)), four), ["tensor 'w'", "non-negative"]),
            c(
                "offsetsArity", h("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4]}}", four),
                ["tensor 'w'", "data_offsets"]),
            c(
                "overlap", h(header(e("a", "F32", [2], 0, 8), e("b", "F32", [1], 4, 8)), eight),
                ["tensor 'b'", "overlap", "'a'"]),
            c(
                "hole", h(header(e("a", "F32", [1], 0, 4), e("b", "F32", [1], 8, 12)), twelve),
                ["tensor 'b'", "hole", "'a'"]),
            c(
                "holeAtStart", h(header(e("a", "F32", [1], 4, 8)), eight),
                ["tensor 'a'", "hole", "start of the data section"]),
            c("trailingBytes", h(header(e("a", "F32", [1], 0, 4)), eight), ["4 trailing bytes", "'a'"]),
            c(
                "duplicateName", h(header(e("w", "F32", [1], 0, 4), e("w", "F32", [1], 0, 4)), four),
                ["tensor 'w'", "duplicate"]),
            c("metadataNotObject", h("{\"__metadata__\":\"x\"}"), ["__metadata__", "expected an object"]),
            c("metadataNotString", h("{\"__metadata__\":{\"k\":1}}"), ["__metadata__ field 'k'", "expected a string"]),
            c("deepNesting", h(deep), ["nesting"]),
            c("badEscape", h("{\"w\\q\":1}"), ["invalid JSON", "escape"]),
            c("loneSurrogate", h("{\"\\ud800\":1}"), ["invalid JSON", "surrogate"]),
        ]
    }()

    /// The failure each case is (QSTError.Kind): tests check the kind, the fragments check the wording.
    static let kinds: [String: QSTError.Kind] = [
        "tooShort": .headerTooSmall, "empty": .headerTooSmall,
        "lengthPastEnd": .invalidHeaderLength,
        "lengthOver100MB": .headerTooLarge, "lengthUInt64Max": .headerTooLarge,
        "notUTF8": .invalidHeaderEncoding,
        "truncatedJSON": .invalidJSON, "trailingGarbage": .invalidJSON, "deepNesting": .invalidJSON,
        "badEscape": .invalidJSON, "loneSurrogate": .invalidJSON,
        "notAnObject": .invalidHeader, "metadataNotObject": .invalidHeader, "metadataNotString": .invalidHeader,
        "entryNotObject": .invalidTensorInfo, "missingDtype": .invalidTensorInfo, "missingShape": .invalidTensorInfo,
        "missingOffsets": .invalidTensorInfo, "dtypeNotString": .invalidTensorInfo, "unknownDtype": .invalidTensorInfo,
        "nf4NotSafetensors": .invalidTensorInfo, "negativeDim": .invalidTensorInfo, "fractionalDim": .invalidTensorInfo,
        "exponentDim": .invalidTensorInfo, "stringDim": .invalidTensorInfo, "shapeNotArray": .invalidTensorInfo,
        "dimBeyondInt64": .invalidTensorInfo, "offsetsArity": .invalidTensorInfo, "negativeOffset": .invalidTensorInfo,
        "elementCountOverflow": .validationOverflow, "byteCountOverflow": .validationOverflow,
        "spanMismatch": .invalidOffset, "offsetsOutside": .invalidOffset, "beginAfterEnd": .invalidOffset,
        "overlap": .invalidOffset, "hole": .invalidOffset, "holeAtStart": .invalidOffset,
        "trailingBytes": .invalidOffset,
        "duplicateName": .duplicateTensor,
    ]

    func testEveryDefectIsReportedWithFileAndField() throws {
        let dir = try STFiles.makeTempDir("corrupt")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for c in Self.cases {
            let path = dir + "/\(c.label).safetensors"
            try STFiles.write(c.bytes, to: path)
            XCTAssertNotNil(Self.kinds[c.label], "\(c.label) has no expected kind")
            stExpectError([path] + c.fragments, c.label, kind: Self.kinds[c.label]) {
                _ = try SafetensorsFile(path: path)
            }
        }
    }

    /// The header check alone must reject without reading data, so a header that is
    /// fine followed by a valid file opens: a control that the table above is not
    /// failing for some unrelated reason.
    func testControlFilesOpen() throws {
        let dir = try STFiles.makeTempDir("control")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let valid: [[UInt8]] = [
            STFiles.raw(header: Self.header(Self.e("w", "F32", [1], 0, 4)), data: [0, 0, 128, 63]),
            STFiles.raw(
                header: Self.header(Self.e("a", "F32", [1], 0, 4), Self.e("b", "F32", [1], 4, 8)),
                data: [UInt8](repeating: 0, count: 8)),
            STFiles.raw(header: "{}"),
            STFiles.raw(header: "{\"__metadata__\":{\"k\":\"v\"}}   "),
            STFiles.raw(
                header: Self.header(Self.e("z", "F32", [0, 3], 0, 0), Self.e("w", "F32", [1], 0, 4)),
                data: [0, 0, 128, 63]),
        ]
        for (i, bytes) in valid.enumerated() {
            let path = dir + "/ok\(i).safetensors"
            try STFiles.write(bytes, to: path)
            XCTAssertNoThrow(try SafetensorsFile(path: path), "control \(i)")
        }
        let f = try SafetensorsFile(path: dir + "/ok0.safetensors")
        XCTAssertEqual(try f.floats("w"), [1])
        stExpectError([dir + "/ok0.safetensors", "tensor 'nope'"], kind: .tensorNotFound) { _ = try f.rawBytes("nope") }
        stExpectError(["tensor 'w'", "not an integer type"], kind: .dtypeMismatch) { _ = try f.integers("w") }
        stExpectError([dir + "/missing.safetensors", "cannot open"]) {
            _ = try SafetensorsFile(path: dir + "/missing.safetensors")
        }
    }
}
