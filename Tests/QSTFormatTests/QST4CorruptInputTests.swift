import Foundation
import XCTest
@testable import QSTFormat

/// Every .qst4 defect gets its own one-line error naming the file (and tensor where there is
/// one) on open — never a crash.
final class QST4CorruptInputTests: XCTestCase {
    var dir: URL!
    var valid: Data!

    override func setUpWithError() throws {
        dir = try QST4TestSupport.temporaryDirectory()
        let folder = try QST4TestSupport.tinyModelFolder(in: dir)
        let out = dir.appendingPathComponent("valid.qst4").path
        _ = try QST4Quantize(source: folder.path, output: out, policy: QuantizationPolicy(), createdBy: "test").run()
        valid = try Data(contentsOf: URL(fileURLWithPath: out))
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func u64(_ d: Data, _ o: Int) -> Int {
        d.withUnsafeBytes { Int($0.loadUnaligned(fromByteOffset: o, as: UInt64.self)) }
    }

    func put<T: FixedWidthInteger>(_ v: T, at o: Int, in d: inout Data) {
        withUnsafeBytes(of: v.littleEndian) { d.replaceSubrange(o..<(o + MemoryLayout<T>.size), with: $0) }
    }

    /// Rewrites the JSON header through `edit` and fixes up the preamble (lengths and CRC).
    func withHeader(_ edit: (inout [String: Any]) -> Void) throws -> Data {
        let hOff = u64(valid, 24)
        var json = try XCTUnwrap(JSONSerialization.jsonObject(with: valid[hOff...]) as? [String: Any])
        edit(&json)
        return rebuild(headerJSON: try JSONSerialization.data(withJSONObject: json))
    }

    func rebuild(headerJSON: Data) -> Data {
        let hOff = u64(valid, 24)
        var d = valid[0..<hOff] + headerJSON
        put(UInt64(headerJSON.count), at: 32, in: &d)
        put(headerJSON.withUnsafeBytes { Checksums.crc32c($0) }, at: 40, in: &d)
        return Data(d)
    }

    func tensors(_ h: [String: Any]) -> [[String: Any]] { h["tensors"] as! [[String: Any]] }

    func editTensor(_ name: String, _ h: inout [String: Any], _ f: (inout [String: Any]) -> Void) {
        var ts = tensors(h)
        let i = ts.firstIndex { ($0["name"] as? String) == name }!
        f(&ts[i])
        h["tensors"] = ts
    }

    /// Opening `data` fails with a one-line error naming the file, containing every needle and, when given,
    /// of `kind`.
    func assertOpenFails(
        _ data: Data, _ needles: [String], kind: QSTError.Kind? = nil, file: StaticString = #filePath,
        line: UInt = #line
    ) throws {
        let path = dir.appendingPathComponent("bad-\(UUID().uuidString).qst4").path
        try data.write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try QST4Container(path: path), file: file, line: line) { error in
            let msg = "\(error)"
            XCTAssertTrue(msg.contains(path), "error does not name the file: \(msg)", file: file, line: line)
            XCTAssertFalse(msg.contains("\n"), "error is not one line: \(msg)", file: file, line: line)
            for n in needles { XCTAssertTrue(msg.contains(n), "'\(n)' missing from: \(msg)", file: file, line: line) }
            if let kind { XCTAssertEqual((error as? QSTError)?.kind, kind, msg, file: file, line: line) }
        }
    }

    let q = "model.layers.0.self_attn.q_proj.weight"

    func testTheValidFileOpens() throws {
        let path = dir.appendingPathComponent("ok.qst4").path
        try valid.write(to: URL(fileURLWithPath: path))
        XCTAssertEqual(try QST4Container(path: path).header.tensors.count, 6)
    }

    func testPreambleDefects() throws {
        try assertOpenFails(valid.prefix(40), ["too short"], kind: .notQST4)
        var bad = valid!; bad[0] = 0x50
        try assertOpenFails(bad, ["bad magic"], kind: .notQST4)
        bad = valid!; put(UInt16(2), at: 8, in: &bad)
        try assertOpenFails(bad, ["version 2.0 is not supported"], kind: .unsupportedVersion)
        bad = valid!; put(UInt32(1000), at: 12, in: &bad)
        try assertOpenFails(bad, ["alignment 1000"], kind: .invalidPreamble)
        bad = valid!; put(UInt64(200 << 20), at: 32, in: &bad)
        try assertOpenFails(bad, ["exceeds 100 MiB"], kind: .invalidPreamble)
        try assertOpenFails(valid + Data([0]), ["does not end at the end of the file"], kind: .invalidPreamble)
        try assertOpenFails(
            valid.prefix(valid.count - 10), ["does not end at the end of the file"], kind: .invalidPreamble)
        bad = valid!; bad[bad.count - 3] ^= 0x20
        try assertOpenFails(bad, ["header checksum mismatch"], kind: .checksumMismatch)
    }

    func testHeaderDefects() throws {
        try assertOpenFails(rebuild(headerJSON: Data("not json".utf8)), ["header is not JSON"], kind: .invalidJSON)
        try assertOpenFails(rebuild(headerJSON: Data("[1, 2]".utf8)), ["not a JSON object"], kind: .invalidHeader)
        try assertOpenFails(try withHeader { $0["tensors"] = nil }, ["missing field 'tensors'"], kind: .invalidHeader)
        try assertOpenFails(try withHeader { $0["format"] = "gguf" }, ["format is 'gguf'"], kind: .invalidHeader)
    }

    func testTensorDirectoryDefects() throws {
        try assertOpenFails(
            try withHeader { h in editTensor(q, &h) { $0["dtype"] = "Q8_0" } }, [q, "unknown dtype 'Q8_0'"],
            kind: .invalidTensorInfo)
        try assertOpenFails(
            try withHeader { h in editTensor(q, &h) { $0["parts"] = nil } }, [q, "missing field 'parts'"],
            kind: .invalidTensorInfo)
        try assertOpenFails(
            try withHeader { h in editTensor(q, &h) { $0["shape"] = [16, -16] } }, [q, "negative dimension"],
            kind: .invalidTensorInfo)
        try assertOpenFails(
            try withHeader { h in editTensor(q, &h) { $0["shape"] = [1 << 40, 1 << 40] } }, [q, "overflows"],
            kind: .validationOverflow)
        try assertOpenFails(
            try withHeader { h in editTensor(q, &h) { $0["shape"] = [16, 17] } }, [q, "expected"], kind: .invalidOffset)
        try assertOpenFails(
            try withHeader { h in editTensor(q, &h) { $0["block_size"] = 48 } }, [q, "block size 48"],
            kind: .invalidTensorInfo)
        try assertOpenFails(
            try withHeader { h in
                editTensor(q, &h) { t in
                    var p = t["parts"] as! [String: Any]; var c = p["codes"] as! [String: Any]
                    c["offset"] = 1 << 40; p["codes"] = c; t["parts"] = p
                }
            }, [q, "outside the data section"], kind: .invalidOffset)
        try assertOpenFails(
            try withHeader { h in
                editTensor(q, &h) { t in
                    var p = t["parts"] as! [String: Any]; var c = p["codes"] as! [String: Any]
                    c["offset"] = (c["offset"] as! Int) + 1; p["codes"] = c; t["parts"] = p
                }
            }, [q, "not 64-byte aligned"], kind: .misalignedData)
        try assertOpenFails(
            try withHeader { h in
                let other = tensors(h).first { ($0["name"] as? String) == "model.layers.1.self_attn.q_proj.weight" }!
                editTensor(q, &h) { $0["parts"] = other["parts"] }
            }, ["overlaps"], kind: .invalidOffset)
        try assertOpenFails(
            try withHeader { h in
                var ts = tensors(h); ts.append(ts.first { ($0["name"] as? String) == q }!); h["tensors"] = ts
            }, [q, "listed twice"], kind: .duplicateTensor)
        try assertOpenFails(
            try withHeader { h in
                var ls = h["layers"] as! [[String: Any]]; ls[0]["offset"] = (ls[0]["offset"] as! Int) + 4096;
                h["layers"] = ls
            }, ["outside layer 0"], kind: .invalidOffset)
    }

    /// Sizes that overflow 64-bit arithmetic or ask for absurd allocations are refused by name, not trapped
    /// on (regressions from hardening the reader for Fuzz/fuzz-qst4).
    func testSizesBeyondAnyFileAreRefused() throws {
        try assertOpenFails(
            try withHeader { h in editTensor(q, &h) { $0["shape"] = [1 << 61, 2] } }, [q, "overflows"])
        try assertOpenFails(
            try withHeader { h in editTensor(q, &h) { $0["dq_block_size"] = Int.max } }, [q, "dq_block_size"])
        try assertOpenFails(
            try withHeader { h in
                var ls = h["layers"] as! [[String: Any]]; ls[0]["length"] = -Int.max; h["layers"] = ls
            }, ["layer 0"])
        for raw in [-1, 1 << 50, 7] {
            let data = try withHeader { h in
                var fs = h["files"] as! [[String: Any]]; fs[0]["raw_length"] = raw; h["files"] = fs
            }
            let path = dir.appendingPathComponent("raw\(raw).qst4").path
            try data.write(to: URL(fileURLWithPath: path))
            let c = try QST4Container(path: path)
            let name = try XCTUnwrap(c.header.files.first?.name)
            XCTAssertThrowsError(try c.embeddedFile(name)) { e in
                XCTAssertTrue("\(e)".contains("declared size \(raw) bytes"), "\(e)")
                XCTAssertTrue("\(e)".contains(path), "\(e)")
            }
        }
    }

    func testCorruptDataIsFoundByVerifyNotOnOpen() throws {
        var bad = valid!
        let c0 = try QST4Container(
            path: {
                let p = dir.appendingPathComponent("v.qst4").path; try valid.write(to: URL(fileURLWithPath: p));
                return p
            }())
        let codes = try c0.entry(q).parts["codes"]!
        bad[codes.offset + 3] ^= 0x11
        let path = dir.appendingPathComponent("flipped.qst4").path
        try bad.write(to: URL(fileURLWithPath: path))
        let c = try QST4Container(path: path)
        let failures = c.verify()
        XCTAssertEqual(failures.count, 1)
        XCTAssertTrue(failures.first?.contains(q) ?? false)
        XCTAssertTrue(failures.first?.contains("checksum mismatch") ?? false)
    }
}
