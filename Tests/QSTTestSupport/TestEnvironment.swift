import Foundation

/// Where every test target finds its inputs, from the environment `Scripts/test` sets up (one place,
/// instead of a copy per target):
/// - `QST_CACHE` (default `~/.cache/qst`): the venv, the fetched model, the tiny models;
/// - `QST_PYTHON` (default `$QST_CACHE/venv/bin/python`): the Python of the NumPy references;
/// - `QST_DATA` (default `<repository>/../shared/data`; `Scripts/test` sets it): the shared datasets and golden files;
/// - `QST_MODEL_F32` (default `$QST_CACHE/models/SmolLM2-135M-Instruct-f32`): the real model's F32 folder.
/// What a test does when one is missing is `TestRequirement`'s business.
public enum TestEnvironment {
    public static var variables: [String: String] { ProcessInfo.processInfo.environment }

    /// The repository root (three levels above this file: Tests/QSTTestSupport/TestEnvironment.swift).
    public static let repoRoot: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    public static var cacheDir: String { variables["QST_CACHE"] ?? NSHomeDirectory() + "/.cache/qst" }

    public static var python: String { variables["QST_PYTHON"] ?? cacheDir + "/venv/bin/python" }

    public static var dataDir: String {
        variables["QST_DATA"] ?? repoRoot.deletingLastPathComponent().appendingPathComponent("shared/data").path
    }

    public static var realModelF32: String {
        variables["QST_MODEL_F32"] ?? cacheDir + "/models/SmolLM2-135M-Instruct-f32"
    }
}
