import Foundation
import QSTEngine
import QSTFormat
import XCTest
@testable import QSTSide
import QSTTestSupport

/// qst-export's formats: adapter folders (deterministic bytes, identity checks) and merged containers
/// (base bytes unchanged, checksums re-verified, same logits as base + adapter).
final class ExportTests: XCTestCase {
    func bytes(_ path: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: path)) }

    func testAdapterExportLoadExportGivesIdenticalBytes() throws {
        let base = try FrozenModel(path: try ExportFixtures.tinyContainer())
        let side = try ExportFixtures.sideWeights(for: base)
        let identity = try BaseIdentity.of(base.source)
        for dtype in ExportDType.allCases {
            let first = try ExportFixtures.scratch("a"), second = try ExportFixtures.scratch("b")
            let config = AdapterConfig(
                base: identity, side: side.config, dtype: dtype, origin: ExportOrigin(checkpoint: "step", step: 7))
            try AdapterIO.save(side, config: config, directory: first)
            let loaded = try AdapterIO.load(directory: first)
            XCTAssertEqual(loaded.config, config)
            try AdapterIO.save(loaded.weights, config: loaded.config!, directory: second)
            for f in [AdapterIO.weightsFileName, AdapterIO.configFileName] {
                XCTAssertEqual(try bytes(first + "/" + f), try bytes(second + "/" + f), "\(dtype): \(f)")
            }
            // Values survive as the dtype rounds them (round to nearest even), names as the reference state dict.
            let file = try SafetensorsFile(path: first + "/" + AdapterIO.weightsFileName)
            XCTAssertEqual(Set(file.orderedNames), Set(side.specs.map(\.name)))
            for s in side.specs {
                XCTAssertEqual(file.tensors[s.name]?.dtype, dtype.dtype)
                let original = Array(UnsafeBufferPointer(start: side.values.pointer + s.offset, count: s.count))
                let expected =
                    dtype == .f32
                    ? original
                    : FloatConversion.toF32(FloatConversion.fromF32(original, to: dtype.dtype), from: dtype.dtype)
                XCTAssertEqual(
                    Array(UnsafeBufferPointer(start: loaded.weights.values.pointer + s.offset, count: s.count)),
                    expected, s.name)
            }
        }
    }

    func testMismatchedBaseIsRefused() throws {
        let container = try ExportFixtures.tinyContainer()
        let base = try FrozenModel(path: container)
        let side = try ExportFixtures.sideWeights(for: base)
        var identity = try BaseIdentity.of(base.source)
        identity.tensorDirectorySHA256 = String(repeating: "ab", count: 32)
        let dir = try ExportFixtures.scratch("adapter")
        try AdapterIO.save(
            side,
            config: AdapterConfig(
                base: identity, side: side.config, dtype: .f32,
                origin: ExportOrigin(checkpoint: "best")), directory: dir)
        XCTAssertThrowsError(try TunedModelSpec.open(modelPath: container, sidePaths: [dir], options: EngineOptions()))
        { e in
            XCTAssertTrue("\(e)".contains("tensor directory sha256 abababababababab"), "\(e)")
        }
        let c = try QST4Container(path: container)
        var adapter = AdapterConfig(
            base: identity, side: side.config, dtype: .f32, origin: ExportOrigin(checkpoint: "best"))
        XCTAssertThrowsError(
            try MergedContainer.write(
                base: c, weights: side, adapter: adapter, output: try ExportFixtures.scratch("m.qst4")))
        // Different dimensions are named, whatever the hash says.
        adapter.base = try BaseIdentity.of(base.source)
        adapter.base.dimensions.layerCount += 1
        XCTAssertThrowsError(
            try adapter.base.check(base: try BaseIdentity.of(base.source), adapter: "x", baseOrigin: "y")
        ) { e in
            XCTAssertTrue("\(e)".contains("layers 3"), "\(e)")
        }
    }

    func testMergedContainerCopiesBaseAndGivesSameLogitsAsAdapter() throws {
        let container = try ExportFixtures.tinyContainer()
        let base = try FrozenModel(path: container, options: EngineOptions(matmulPath: .dequantizeSGEMM))
        let side = try ExportFixtures.sideWeights(for: base)
        let adapterDir = try ExportFixtures.scratch("adapter"), merged = try ExportFixtures.scratch("tuned.qst4")
        let config = AdapterConfig(
            base: try BaseIdentity.of(base.source), side: side.config, dtype: .bf16,
            origin: ExportOrigin(checkpoint: "best"))
        try AdapterIO.save(side, config: config, directory: adapterDir)
        let c = try QST4Container(path: container)
        try MergedContainer.write(
            base: c, weights: try AdapterIO.load(directory: adapterDir).weights, adapter: config, output: merged)

        // Base bytes unchanged (everything between the preamble and the base's header), same directory.
        let m = try QST4Container(path: merged)
        let baseBytes = try bytes(container), mergedBytes = try bytes(merged)
        XCTAssertEqual(mergedBytes[64..<c.headerOffset], baseBytes[64..<c.headerOffset])
        XCTAssertEqual(try m.directorySHA256(), try c.directorySHA256())
        XCTAssertEqual(m.header.tensors, c.header.tensors)
        XCTAssertEqual(m.minorVersion, 1)
        XCTAssertTrue(m.verify().isEmpty)
        let section = try XCTUnwrap(try m.dataSection(MergedContainer.sectionName))
        XCTAssertEqual(section.data.offset % m.alignment, 0, "side data starts on a page")
        XCTAssertGreaterThanOrEqual(section.data.offset, c.headerOffset)
        XCTAssertTrue(m.verify(section).isEmpty)
        // Writing again gives the same file.
        let again = try ExportFixtures.scratch("again.qst4")
        try MergedContainer.write(
            base: c, weights: try AdapterIO.load(directory: adapterDir).weights, adapter: config, output: again)
        XCTAssertEqual(try bytes(again), mergedBytes)

        // Merged alone and base + adapter: identical logits.
        let seqs: [[Int32]] = [[1, 5, 9, 33, 2, 140], [1, 77, 3]]
        let batch = TokenBatch(sequences: seqs)
        let options = EngineOptions(matmulPath: .dequantizeSGEMM)
        let fromMerged = try TunedModelSpec.open(modelPath: merged, sidePaths: [], options: options)
        let fromAdapter = try TunedModelSpec.open(modelPath: container, sidePaths: [adapterDir], options: options)
        XCTAssertEqual(fromMerged.sides.count, 1)
        let a = try XCTUnwrap(try fromMerged.tunedModel()).logits(batch)[0].array
        let b = try XCTUnwrap(try fromAdapter.tunedModel()).logits(batch)[0].array
        XCTAssertEqual(a, b)
        XCTAssertEqual(
            try fromMerged.base.logits(batch).array, try base.logits(batch).array, "the merged file's base is the base")
    }

    func testMergedContainerMatchesReferenceReadingTheSectionItself() throws {
        let container = try ExportFixtures.tinyContainer()
        let options = EngineOptions(matmulPath: .dequantizeSGEMM)
        let base = try FrozenModel(path: container, options: options)
        let side = try ExportFixtures.sideWeights(for: base, kind: .linear)
        let merged = try ExportFixtures.scratch("tuned.qst4")
        try MergedContainer.write(
            base: try QST4Container(path: container), weights: side,
            adapter: AdapterConfig(
                base: try BaseIdentity.of(base.source), side: side.config, dtype: .bf16,
                origin: ExportOrigin(checkpoint: "best")), output: merged)
        let seqs: [[Int32]] = [[1, 5, 9, 33, 2, 140, 77]]
        let batch = TokenBatch(sequences: seqs)
        let swift = try XCTUnwrap(
            try TunedModelSpec.open(modelPath: merged, sidePaths: [], options: options).tunedModel()
        )
        .logits(batch)[0].array.map(Double.init)
        let ref = try ExportFixtures.referenceLogits(container: merged, adapter: nil, sequences: seqs)
        XCTAssertLessThan(
            relativeFrobenius(swift, ref), 1e-5, "sections.side read by Scripts/tuned_reference.py")
    }

    func testCorruptBaseTensorIsCaughtWhileMerging() throws {
        let container = try ExportFixtures.tinyContainer()
        let c = try QST4Container(path: container)
        let victim = try XCTUnwrap(c.header.tensors.first { $0.dtype == .nf4 })
        var data = try bytes(container)
        data[victim.parts["codes"]!.offset + 3] ^= 0x10
        let corrupt = try ExportFixtures.scratch("corrupt.qst4")
        try data.write(to: URL(fileURLWithPath: corrupt))
        let broken = try QST4Container(path: corrupt)
        let base = try FrozenModel(path: container)
        let side = try ExportFixtures.sideWeights(for: base)
        let config = AdapterConfig(
            base: try BaseIdentity.of(ContainerWeightSource(container: broken)), side: side.config,
            dtype: .f32, origin: ExportOrigin(checkpoint: "best"))
        let out = try ExportFixtures.scratch("out.qst4")
        XCTAssertThrowsError(try MergedContainer.write(base: broken, weights: side, adapter: config, output: out)) {
            e in
            XCTAssertTrue("\(e)".contains("tensor '\(victim.name)': checksum mismatch while copying"), "\(e)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "no partial output")
    }

    func testCorruptSideSectionIsRefusedOnLoad() throws {
        let container = try ExportFixtures.tinyContainer()
        let c = try QST4Container(path: container)
        let base = try FrozenModel(path: container)
        let side = try ExportFixtures.sideWeights(for: base)
        let merged = try ExportFixtures.scratch("tuned.qst4")
        try MergedContainer.write(
            base: c, weights: side,
            adapter: AdapterConfig(
                base: try BaseIdentity.of(base.source),
                side: side.config, dtype: .f32, origin: ExportOrigin(checkpoint: "best")), output: merged)
        let section = try XCTUnwrap(try QST4Container(path: merged).dataSection(MergedContainer.sectionName))
        let t = section.tensors[section.tensors.count / 2]
        var data = try bytes(merged)
        data[t.offset] ^= 0x01
        try data.write(to: URL(fileURLWithPath: merged))
        XCTAssertThrowsError(try MergedContainer.attachedSide(try QST4Container(path: merged))) { e in
            XCTAssertTrue("\(e)".contains("tensor '\(t.name)': checksum mismatch"), "\(e)")
        }
    }

    func testRunFolderCheckpointChoice() throws {
        let run = try ExportFixtures.scratch("run")
        let base = try FrozenModel(path: try ExportFixtures.tinyContainer())
        let side = try ExportFixtures.sideWeights(for: base)
        for sub in ["checkpoint-00000010", "checkpoint-00000020", "final"] {
            try SideWeightsIO.save(side, directory: run + "/" + sub)
        }
        try Data(#"{"latest": "checkpoint-00000020", "step": 20}"#.utf8).write(
            to: URL(fileURLWithPath: run + "/checkpoint.json"))
        XCTAssertEqual(try ExportSource.resolve(run, choice: nil).folder, run + "/final", "no best/: last")
        XCTAssertEqual(try ExportSource.resolve(run, choice: .last).origin, ExportOrigin(checkpoint: "last", step: 20))
        XCTAssertEqual(try ExportSource.resolve(run, choice: .step(10)).folder, run + "/checkpoint-00000010")
        XCTAssertThrowsError(try ExportSource.resolve(run, choice: .best))
        XCTAssertThrowsError(try ExportSource.resolve(run, choice: .step(15))) { e in
            XCTAssertTrue("\(e)".contains("available: 10, 20"), "\(e)")
        }
        try SideWeightsIO.save(side, directory: run + "/best")
        XCTAssertEqual(try ExportSource.resolve(run, choice: nil).folder, run + "/best")
    }
}
