import Foundation
import XCTest
@testable import QSTFormat

/// Builds safetensors files byte by byte, independently of SafetensorsWriter, so
/// reader tests do not lean on the writer being right.
enum STFiles {
    static func makeTempDir(_ label: String) throws -> String {
        let dir = NSTemporaryDirectory() + "qst-st-\(label)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// Length prefix (the true header length unless `declaredLength` overrides it),
    /// header bytes, data bytes.
    static func raw(header: [UInt8], data: [UInt8] = [], declaredLength: UInt64? = nil) -> [UInt8] {
        let n = declaredLength ?? UInt64(header.count)
        var out: [UInt8] = (0..<8).map { UInt8(truncatingIfNeeded: n >> (8 * UInt64($0))) }
        out += header
        out += data
        return out
    }

    static func raw(header: String, data: [UInt8] = [], declaredLength: UInt64? = nil) -> [UInt8] {
        raw(header: Array(header.utf8), data: data, declaredLength: declaredLength)
    }

    static func write(_ bytes: [UInt8], to path: String) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    /// One header entry as JSON text.
    static func entry(_ name: String, _ dtype: String, _ shape: [Int], _ begin: Int, _ end: Int) -> String {
        "\"\(name)\":{\"dtype\":\"\(dtype)\",\"shape\":[\(shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(begin),\(end)]}"
    }

    /// A well-formed file of F32 tensors laid out back to back, values given.
    static func f32File(_ tensors: [(String, [Float])]) -> [UInt8] {
        var entries: [String] = []
        var data: [UInt8] = []
        for (name, values) in tensors {
            let bytes = values.flatMap { v in
                (0..<4).map { UInt8(truncatingIfNeeded: v.bitPattern >> (8 * UInt32($0))) }
            }
            entries.append(entry(name, "F32", [values.count], data.count, data.count + bytes.count))
            data += bytes
        }
        return raw(header: "{" + entries.joined(separator: ",") + "}", data: data)
    }
}

extension XCTestCase {
    /// Runs `body`, expecting a QSTError whose message contains every fragment (and of `kind`, when given).
    func stExpectError(
        _ fragments: [String], _ label: String = "", kind: QSTError.Kind? = nil, file: StaticString = #filePath,
        line: UInt = #line, _ body: () throws -> Void
    ) {
        do {
            try body()
            XCTFail("\(label): expected an error containing \(fragments)", file: file, line: line)
        } catch let e as QSTError {
            XCTAssertFalse(
                e.message.contains("\n"), "\(label): error must be one line: \(e.message)", file: file, line: line)
            if let kind { XCTAssertEqual(e.kind, kind, "\(label): \(e.message)", file: file, line: line) }
            for f in fragments {
                XCTAssertTrue(e.message.contains(f), "\(label): '\(e.message)' lacks '\(f)'", file: file, line: line)
            }
        } catch {
            XCTFail("\(label): expected QSTError, got \(error)", file: file, line: line)
        }
    }
}
