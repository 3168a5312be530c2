import Foundation
import XCTest
import QSTTestSupport

/// The independent NumPy scripts under Scripts/, run through the project's venv Python
/// (QST_PYTHON, else ${QST_CACHE:-~/.cache/qst}/venv/bin/python). Without Python the test
/// is skipped, unless QST_REQUIRE_REFERENCE=1 (Scripts/test sets it), which makes it fail.
enum ReferenceScripts {
    static var environment: [String: String] { ProcessInfo.processInfo.environment }
    static var cache: String { TestEnvironment.cacheDir }

    static func python() throws -> String {
        let py = TestEnvironment.python
        if FileManager.default.isExecutableFile(atPath: py) { return py }
        try TestRequirement.unavailable("no Python at \(py); run Scripts/setup-env.sh")
    }

    /// The real model's F32 Hugging Face folder (Scripts/fetch-model).
    static func realModelF32() throws -> String {
        let dir = TestEnvironment.realModelF32
        if FileManager.default.fileExists(atPath: dir + "/model.safetensors") { return dir }
        try TestRequirement.unavailable("real model missing at \(dir); run Scripts/fetch-model")
    }

    struct Output { let status: Int32; let stdout: String; let stderr: String }

    static func run(_ script: String, _ args: [String]) throws -> Output {
        try runPython([ToolHarness.repo.appendingPathComponent("Scripts/\(script)").path] + args)
    }

    /// The project's Python with `arguments` (a script path, or `-c CODE`, and its arguments).
    static func runPython(_ arguments: [String]) throws -> Output {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try python())
        p.arguments = arguments
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Output(
            status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self),
            stderr: String(decoding: e, as: UTF8.self))
    }
}
