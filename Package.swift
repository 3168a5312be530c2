// swift-tools-version:6.0
import PackageDescription

// Release builds keep Swift's bounds and overflow checks (`-O`) everywhere a file, a tokenizer, a data
// record or a command line is read: `checked` (QSTFormat, QSTTokenizer, QSTSide's record readers, the
// engine, the tools). Only QSTNN's layer math and QSTCore's parallel loops, which read nothing, drop
// them: `hotMath` (`-Ounchecked`). Measured: BENCHMARKS.md §18.
let checked: [SwiftSetting] = [.unsafeFlags(["-O", "-wmo"], .when(configuration: .release))]
let hotMath: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release))]

let argumentParser: Target.Dependency = .product(name: "ArgumentParser", package: "swift-argument-parser")
let nio: [Target.Dependency] = ["NIOCore", "NIOPosix", "NIOHTTP1"].map { .product(name: $0, package: "swift-nio") }

/// The command-line tools: name and what each needs besides QSTCLI and the argument parser.
let tools: [(name: String, dependencies: [Target.Dependency])] = [
    ("qst-quantize", ["QSTFormat", "QSTEngine"]),
    ("qst-inspect", ["QSTFormat"]),
    ("qst-eval", ["QSTFormat", "QSTEngine", "QSTEngineCLI", "QSTSide", "QSTEvaluation"]),
    ("qst-generate", ["QSTEngine", "QSTEngineCLI", "QSTSide"]),
    ("qst-init-side", ["QSTSide"]),
    ("qst-tune", ["QSTSide", "QSTEngine", "QSTEngineCLI", "QSTNN", "QSTDistributed", "QSTEvaluation"]),
    ("qst-export", ["QSTSide"]),
    ("qst-synthetic", ["QSTFormat", "QSTTokenizer", "QSTCore"]),
    ("qst-serve", ["QSTServe", "QSTEngine", "QSTEngineCLI", "QSTSide", "QSTTokenizer", "QSTFormat"] + nio),
]

/// One tool's executable target: a checked build (input-reading code keeps its bounds checks).
func tool(_ name: String, _ dependencies: [Target.Dependency]) -> Target {
    .executableTarget(name: name, dependencies: dependencies + ["QSTCLI", argumentParser], swiftSettings: checked)
}

let package = Package(
    name: "QST",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "QSTFormat", targets: ["QSTFormat"]),
        .library(name: "QSTEngine", targets: ["QSTEngine"]),
        .library(name: "QSTSide", targets: ["QSTSide"]),
        .library(name: "QSTEvaluation", targets: ["QSTEvaluation"]),
        .library(name: "QSTTokenizer", targets: ["QSTTokenizer"]),
    ] + tools.map { .executable(name: $0.name, targets: [$0.name]) },
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // qst-serve's HTTP/1.1 server (plain NIOHTTP1: README, "qst-serve", says why not a framework).
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
    ],
    targets: [
        // System libraries from Debian's libopenblas-dev and libzstd-dev.
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS"),
        .systemLibrary(name: "CZstd", path: "Sources/CZstd"),
        // Hot kernels in C (NF4 codec, matmul; AVX-512 / AVX2 / NEON paths chosen at run time).
        // -ffp-contract=off: products round as written (paths are compared bit for bit);
        // -fno-math-errno: lrintf becomes one instruction (same bits) instead of a libm call.
        .target(
            name: "QSTKernels", path: "Sources/QSTKernels",
            cSettings: [.unsafeFlags(["-O3", "-ffp-contract=off", "-fno-math-errno"])]),
        // Open MPI loaded at run time (dlopen), so one build runs with or without it (README, "Data parallelism").
        .target(name: "CMPIShim", path: "Sources/CMPIShim", linkerSettings: [.linkedLibrary("dl")]),
        // Small shared pieces: parallel loops over the cores, the one pointer wrapper, the one error type.
        .target(name: "QSTCore", dependencies: ["CWorkerPool"], swiftSettings: hotMath),
        // Spin-then-sleep worker threads for the engine's short parallel loops (decoding).
        .target(
            name: "CWorkerPool", path: "Sources/CWorkerPool", cSettings: [.unsafeFlags(["-O2"])],
            linkerSettings: [.linkedLibrary("pthread")]),
        // The one JSON reader (safetensors headers, config.json, tokenizer files, records, request bodies);
        // only QSTCore (for QSTError) below it, so both QSTFormat and QSTTokenizer build on it.
        .target(name: "QSTJSON", dependencies: ["QSTCore"], swiftSettings: checked),
        // The one format library: safetensors, NF4, the .qst4 container (BLAS/LAPACK for GPTQ-quantized NF4).
        .target(
            name: "QSTFormat", dependencies: ["CZstd", "QSTKernels", "QSTCore", "QSTJSON", "CBLAS"],
            swiftSettings: checked),
        // Hugging Face tokenizer.json and chat templates.
        .target(name: "QSTTokenizer", dependencies: ["QSTJSON", "QSTCore"], swiftSettings: checked),
        // Layers with forward and backward side by side, on plain F32 buffers.
        .target(name: "QSTNN", dependencies: ["CBLAS", "QSTKernels", "QSTCore"], swiftSettings: hotMath),
        // The frozen LLaMA-family model over a mapped container.
        .target(
            name: "QSTEngine", dependencies: ["QSTFormat", "QSTNN", "QSTTokenizer", "CBLAS", "QSTKernels"],
            swiftSettings: checked),
        // The side network, its training loop, export; its record readers (JSONL / JSON / GLUE TSV).
        .target(
            name: "QSTSide", dependencies: ["QSTEngine", "QSTNN", "QSTFormat", "QSTTokenizer", "QSTCore", "CBLAS"],
            swiftSettings: checked),
        // Measuring models: perplexity, multiple choice, KL against a reference model, speed benchmarks
        // of the frozen forward, of tuning and of generation with side networks.
        .target(
            name: "QSTEvaluation",
            dependencies: ["QSTEngine", "QSTSide", "QSTNN", "QSTFormat", "QSTTokenizer", "QSTCore", "CBLAS"],
            swiftSettings: checked),
        // Data-parallel training over MPI: the job's ranks as a GradientReducer.
        .target(name: "QSTDistributed", dependencies: ["CMPIShim", "QSTSide", "QSTFormat"], swiftSettings: checked),
        // Shared command-line plumbing: errors, progress, JSON, BLAS core selection.
        .target(name: "QSTCLI", dependencies: ["QSTCore", argumentParser], swiftSettings: checked),
        // Command-line options shared by the tools that run the engine.
        .target(name: "QSTEngineCLI", dependencies: ["QSTEngine", "QSTCLI", argumentParser], swiftSettings: checked),
        // qst-serve's engine side: continuous batching of requests over one base and many side networks.
        .target(
            name: "QSTServe", dependencies: ["QSTCore", "QSTEngine", "QSTSide", "QSTTokenizer", "QSTFormat", "QSTNN"],
            swiftSettings: checked),
        // Shared test pieces: the one NaN-safe comparison and the CI-aware skip (Tests/QSTTestSupport).
        .target(name: "QSTTestSupport", path: "Tests/QSTTestSupport"),
        .testTarget(name: "QSTKernelsTests", dependencies: ["QSTKernels", "QSTCore", "QSTTestSupport"]),
        .testTarget(name: "QSTFormatTests", dependencies: ["QSTFormat", "QSTTestSupport"]),
        .testTarget(name: "QSTTokenizerTests", dependencies: ["QSTTokenizer", "QSTTestSupport"]),
        .testTarget(name: "QSTNNTests", dependencies: ["QSTNN", "QSTCore", "CWorkerPool", "QSTTestSupport"]),
        .testTarget(name: "QSTEngineTests", dependencies: ["QSTEngine", "QSTEvaluation", "QSTTestSupport"]),
        .testTarget(name: "QSTSideTests", dependencies: ["QSTSide", "QSTTestSupport"]),
        .testTarget(
            name: "QSTToolTests",
            dependencies: ["QSTCLI", "QSTFormat", "QSTEngine", "QSTServe", "QSTSide", "QSTTestSupport"]),
    ] + tools.map { tool($0.name, $0.dependencies) }
        // Micro-benchmarks of the kernels and layers (Scripts/bench-dequant, Scripts/bench-layers): a developer
        // tool, so a target but not a product; `swift build --product qst-bench` builds it.
        + [tool("qst-bench", ["QSTKernels", "QSTCore", "QSTNN"])]
)
