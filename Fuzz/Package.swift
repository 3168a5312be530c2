// swift-tools-version:6.0
// libFuzzer targets for the parsers that read files from anywhere (Scripts/fuzz builds and runs them).
// Built separately from the main package, with every module instrumented:
//   swift build --package-path Fuzz -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library
import PackageDescription

let package = Package(
    name: "QSTFuzz",
    platforms: [.macOS(.v14)],
    dependencies: [.package(name: "QST", path: "..")],
    targets: [
        .target(name: "FuzzDriver"),
        // Temporary input files and a toy tokenizer shared by the targets.
        .target(name: "FuzzSupport", dependencies: ["FuzzDriver",
            .product(name: "QSTFormat", package: "QST"), .product(name: "QSTSide", package: "QST"),
            .product(name: "QSTTokenizer", package: "QST")]),
        .executableTarget(name: "fuzz-safetensors", dependencies: ["FuzzSupport", .product(name: "QSTFormat", package: "QST")]),
        .executableTarget(name: "fuzz-qst4", dependencies: ["FuzzSupport", .product(name: "QSTFormat", package: "QST"),
                                                            .product(name: "QSTEngine", package: "QST"),
                                                            .product(name: "QSTSide", package: "QST")]),
        .executableTarget(name: "fuzz-side", dependencies: ["FuzzSupport", .product(name: "QSTFormat", package: "QST"),
                                                            .product(name: "QSTSide", package: "QST")]),
        .executableTarget(name: "fuzz-tokenizer", dependencies: ["FuzzSupport", .product(name: "QSTTokenizer", package: "QST")]),
        .executableTarget(name: "fuzz-records", dependencies: ["FuzzSupport", .product(name: "QSTSide", package: "QST"),
                                                               .product(name: "QSTTokenizer", package: "QST")]),
    ]
)
