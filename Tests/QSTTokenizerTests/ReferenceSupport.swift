import Foundation
import QSTTokenizer
import XCTest
import QSTTestSupport

/// Runs the Python reference scripts (HF `tokenizers`, jinja2) that produce the expected outputs.
/// Python comes from QST_PYTHON or $QST_CACHE/venv; without it the tests skip, unless
/// QST_REQUIRE_REFERENCE=1 makes a missing reference a failure.
enum Reference {
    static let environment = ProcessInfo.processInfo.environment
    static var cacheDir: String { TestEnvironment.cacheDir }
    static var python: String { TestEnvironment.python }
    static var required: Bool { environment["QST_REQUIRE_REFERENCE"] == "1" }
    static var dataDir: String { TestEnvironment.dataDir }
    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    static var smolLM2Folder: URL {
        URL(fileURLWithPath: cacheDir + "/models/SmolLM2-135M-Instruct-f32")
    }

    /// Skips (or fails, when the reference is required) with a reason.
    static func unavailable(_ reason: String) throws -> Never {
        try TestRequirement.unavailable(reason)
    }

    static func temporaryDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("qst-tok-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    /// Runs `Scripts/<script> args...` with the reference Python; throws on a non-zero exit.
    static func run(_ script: String, _ args: [String]) throws {
        guard FileManager.default.isExecutableFile(atPath: python) else {
            try unavailable("no Python at \(python) (set QST_PYTHON or run Scripts/setup-env.sh)")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [repoRoot.appendingPathComponent("Scripts/\(script)").path] + args
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let stderr = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        if process.terminationStatus != 0 {
            let message = String(decoding: stderr, as: UTF8.self).suffix(2000)
            throw NSError(
                domain: "Reference", code: Int(process.terminationStatus),
                userInfo: [NSLocalizedDescriptionKey: "\(script) \(args.joined(separator: " ")) failed: \(message)"])
        }
    }

    /// One line of Scripts/tokenizer_expected.py output. Read with JSONDecoder: JSONSerialization on
    /// Linux drops a U+FEFF at the start of a string.
    struct Record: Decodable {
        let text: String
        let ids: [Int]?
        let ids_special: [Int]?
        let decoded: String?
    }

    static func readJSONL<T: Decodable>(_ url: URL, as type: T.Type = Record.self) throws -> [T] {
        let data = try Data(contentsOf: url)
        return try data.split(separator: UInt8(ascii: "\n")).map { try JSONDecoder().decode(T.self, from: Data($0)) }
    }

    /// A file of seeded random stress texts (Scripts/tokenizer_cases.py fuzz) for `--jsonl`.
    static func fuzzTexts(in dir: URL, count: Int = 2000) throws -> URL {
        let out = dir.appendingPathComponent("fuzz.jsonl")
        try run("tokenizer_cases.py", ["fuzz", out.path, "--count", String(count)])
        return out
    }

    /// Expected encodings of texts by the HF `tokenizers` library (Scripts/tokenizer_expected.py).
    static func expected(tokenizer: URL, inputs: [String]) throws -> [Record] {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("expected.jsonl")
        try run("tokenizer_expected.py", ["--tokenizer", tokenizer.path] + inputs + [out.path])
        return try readJSONL(out)
    }
}

/// Compares a tokenizer with reference records; reports the first few differences in full.
func assertMatchesReference(
    _ tokenizer: Tokenizer, _ records: [Reference.Record],
    checkSpecial: Bool = true, checkDecode: Bool = true,
    file: StaticString = #filePath, line: UInt = #line
) {
    var failures = 0
    for record in records {
        let text = record.text
        guard let expected = record.ids else { continue }
        let ids = tokenizer.encode(text)
        if ids != expected {
            failures += 1
            if failures <= 5 {
                let at = zip(ids, expected).prefix { $0 == $1 }.count
                XCTFail(
                    "ids differ for \(text.debugDescription.prefix(200)) at index \(at): got \(Array(ids[at..<min(ids.count, at + 8)])) expected \(Array(expected[at..<min(expected.count, at + 8)]))",
                    file: file, line: line)
            }
            continue
        }
        if checkSpecial, let expectedSpecial = record.ids_special {
            let special = tokenizer.encode(text, addSpecialTokens: true)
            if special != expectedSpecial {
                failures += 1
                XCTFail(
                    "ids with special tokens differ for \(text.debugDescription.prefix(200))", file: file, line: line)
            }
        }
        if checkDecode, let decoded = record.decoded {
            let got = tokenizer.decode(expected)
            if got != decoded {
                failures += 1
                if failures <= 5 {
                    XCTFail(
                        "decode differs for \(text.debugDescription.prefix(200)): got \(got.debugDescription.prefix(200)) expected \(decoded.debugDescription.prefix(200))",
                        file: file, line: line)
                }
            }
        }
    }
    XCTAssertEqual(failures, 0, "\(failures) of \(records.count) records differ", file: file, line: line)
}
