import Foundation
import XCTest
import QSTTestSupport

/// Runs the built command-line tools. QST_BIN names their folder (Scripts/test sets it);
/// otherwise the package's own build folder for this configuration is used.
struct ToolHarness {
    struct Result { let status: Int32; let stdout: String; let stderr: String; let signaled: Bool }

    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    static func binary(_ name: String) throws -> String {
        if name.hasPrefix("/") { return name }  // a system program such as /bin/sh
        let env = ProcessInfo.processInfo.environment
        #if DEBUG
            let config = "debug"
        #else
            let config = "release"
        #endif
        let dirs = [env["QST_BIN"], repo.appendingPathComponent(".build/\(config)").path].compactMap { $0 }
        for d in dirs where FileManager.default.isExecutableFile(atPath: d + "/" + name) { return d + "/" + name }
        try TestRequirement.unavailable("\(name) is not built (looked in \(dirs)); run swift build first")
    }

    @discardableResult
    static func run(
        _ tool: String, _ args: [String], environment: [String: String] = [:],
        killAfter: TimeInterval? = nil
    ) throws -> Result {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try binary(tool))
        p.arguments = args
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        p.environment = env
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        if let t = killAfter {
            Thread.sleep(forTimeInterval: t)
            if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        }
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Result(
            status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self),
            stderr: String(decoding: e, as: UTF8.self), signaled: p.terminationReason == .uncaughtSignal)
    }

    static func temporaryDirectory() throws -> URL {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("qst-tool-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        return d
    }

    static func json(_ s: String) throws -> [String: Any] {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data(s.utf8)) as? [String: Any])
    }
}
