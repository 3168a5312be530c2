import Foundation
import XCTest
import QSTEngine
import QSTFormat
import QSTSide
import QSTTestSupport

/// `qst-eval states` (Formats/STATES.md) and the .npy writer under it: the bytes against NumPy's own
/// `numpy.save`, the arrays against the frozen model run one sequence at a time.
final class StatesToolTests: ToolTestCase {
    /// NPYFile writes what `numpy.save` writes for the same values, byte for byte: one and three
    /// dimensions, both dtypes, and headers whose padding differs.
    func testNPYWriterWritesNumpysBytes() throws {
        let cases: [(name: String, shape: [Int], floats: Bool)] = [
            ("f3", [2, 3, 4], true), ("i1", [5], false), ("f1", [1000], true), ("w", [1, 33, 7], true),
        ]
        for c in cases {
            let count = c.shape.reduce(1, *)
            let w = try NPYFile.Writer(path: path(c.name + ".npy"), type: c.floats ? .float32 : .int32, shape: c.shape)
            if c.floats {
                try w.append((0..<count).map { Float($0) * 0.25 - 1 })
            } else {
                try w.append((0..<count).map { Int32($0) * -3 })
            }
            try w.commit()
        }
        let code = """
            import io, sys, numpy as np
            for name, shape, floats in [("f3", (2, 3, 4), 1), ("i1", (5,), 0), ("f1", (1000,), 1), ("w", (1, 33, 7), 1)]:
                n = int(np.prod(shape))
                a = (np.arange(n) * 0.25 - 1).astype("<f4") if floats else (np.arange(n) * -3).astype("<i4")
                buf = io.BytesIO(); np.save(buf, a.reshape(shape))
                mine = open(sys.argv[1] + "/" + name + ".npy", "rb").read()
                print(name, "same" if mine == buf.getvalue() else f"differs: {mine[:80]!r} vs {buf.getvalue()[:80]!r}")
            """
        let r = try ReferenceScripts.runPython(["-c", code, dir.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout, "f3 same\ni1 same\nf1 same\nw same\n")
    }

    /// A writer given fewer values than its shape leaves no file behind.
    func testNPYWriterRefusesAShortArray() throws {
        let w = try NPYFile.Writer(path: path("short.npy"), type: .float32, shape: [2, 3])
        try w.append([Float](repeating: 1, count: 3))
        XCTAssertThrowsError(try w.commit()) { XCTAssertTrue("\($0)".contains("needs 24"), "\($0)") }
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("short.npy")))
    }

    /// The three arrays of a states folder appear together or not at all: one short array keeps the complete
    /// ones out too (committed one after another, the first two would be left behind).
    func testNPYWritersCommitTogether() throws {
        let names = ["a.npy", "b.npy", "c.npy"]
        let writers = try names.map { try NPYFile.Writer(path: path($0), type: .float32, shape: [2]) }
        try writers[0].append([Float(1), 2])
        try writers[1].append([Float(3), 4])
        try writers[2].append([Float(5)])
        XCTAssertThrowsError(try NPYFile.Writer.commitAll(writers)) {
            XCTAssertTrue("\($0)".contains("c.npy") && "\($0)".contains("needs 8"), "\($0)")
        }
        for n in names { XCTAssertFalse(FileManager.default.fileExists(atPath: path(n)), n) }
        try writers[2].append([Float(6)])
        try NPYFile.Writer.commitAll(writers)
        for n in names { XCTAssertTrue(FileManager.default.fileExists(atPath: path(n)), n) }
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.contains(".tmp.") }
        XCTAssertEqual(leftovers, [], "no temporary file stays behind")
    }

    /// Every example's rows are the frozen model's states of that prompt run alone, in file order:
    /// the last token's state per layer, the final norm's output and the mean over the prompt.
    /// Batches of 2 (padded) in chunks of 8 sorted by length: ten examples make two chunks, the second short.
    func testStatesAreTheFrozenModelsPerExample() throws {
        try requireRealModelBuild()
        let model = try ReferenceScripts.realModelF32()
        let sentences = [
            "a gorgeous , witty , seductive movie .", "dull",
            "the plot is nothing but boilerplate clichés from start to finish ,",
            "warm and funny", "an ugly , pointless mess that overstays its welcome", "beautifully acted",
            "not worth the price of admission", "a quiet , moving character study", "it 's a bore", "brilliant",
        ]
        let tsv =
            "sentence\tlabel\n" + sentences.enumerated().map { "\($1)\t\($0 % 3 == 0 ? 1 : 0)" }.joined(separator: "\n")
        try (tsv + "\n").write(toFile: path("t.tsv"), atomically: true, encoding: .utf8)
        let report = try ToolHarness.json(
            try ok(
                "qst-eval",
                [
                    "states", model, "--task", "sst2", "--data", path("t.tsv"), "--out", path("s"), "--batch", "2",
                    "--chunk", "8",
                    "--json",
                ]
            ).stdout)
        XCTAssertEqual(report["examples"] as? Int, 10)

        let frozen = try FrozenModel(path: model)
        let loaded = try GLUETask.named("sst2").load(
            path: path("t.tsv"), tokenizer: try frozen.source.loadTokenizer(), maxLength: 256, skipBad: false,
            head: true)
        let L = frozen.layerCount, d = frozen.hiddenSize
        let last = try npyFloats(path("s/last.npy"), shape: [10, L + 2, d])
        let mean = try npyFloats(path("s/mean.npy"), shape: [10, L + 1, d])
        var wantLast: [Float] = [], wantMean: [Float] = []
        for e in loaded.examples {
            let n = e.ids.count
            var lastRows = [[Float]](repeating: [], count: L + 2), meanRows = [[Float]](repeating: [], count: L + 1)
            let normed = try frozen.forwardHiddenStates(TokenBatch(sequences: [e.ids])) { v, h in
                lastRows[v] = Array(UnsafeBufferPointer(start: h + (n - 1) * d, count: d))
                meanRows[v] = (0..<d).map { j in Float((0..<n).reduce(0.0) { $0 + Double(h[$1 * d + j]) } / Double(n)) }
            }
            lastRows[L + 1] = Array(normed[((n - 1) * d)..<(n * d)])
            wantLast += lastRows.joined()
            wantMean += meanRows.joined()
        }
        XCTAssertLessThanOrEqual(relativeFrobenius(last, wantLast), 1e-6, "last-token states")
        XCTAssertLessThanOrEqual(relativeFrobenius(mean, wantMean), 1e-6, "token means")
        let labels = try Data(contentsOf: URL(fileURLWithPath: path("s/labels.npy")))
        XCTAssertEqual(Array(labels.suffix(40)), [1, 0, 0, 1, 0, 0, 1, 0, 0, 1].flatMap { [UInt8($0), 0, 0, 0] })

        // NumPy reads the three files with the documented dtypes and shapes.
        let check = """
            import sys, numpy as np
            d = sys.argv[1]
            print(*[(a.dtype.str, a.shape) for a in (np.load(d + f) for f in ("/last.npy", "/mean.npy", "/labels.npy"))])
            """
        let r = try ReferenceScripts.runPython(["-c", check, path("s")])
        XCTAssertEqual(
            r.stdout, "('<f4', (10, \(L + 2), \(d))) ('<f4', (10, \(L + 1), \(d))) ('<i4', (10,))\n", r.stderr)
    }

    func testBadInputIsOneLineAndNoFiles() throws {
        try requireRealModelBuild()
        let model = try ReferenceScripts.realModelF32()
        try "sentence\tlabel\ngood\t1\nbad row without a label\n".write(
            toFile: path("bad.tsv"), atomically: true, encoding: .utf8)
        for (args, text) in [
            (["--data", path("missing.tsv")], "missing.tsv"),
            (["--data", path("bad.tsv")], "bad.tsv"),
            (["--data", path("bad.tsv"), "--limit", "0"], "--limit"),
        ] {
            let r = try ToolHarness.run("qst-eval", ["states", model, "--task", "sst2", "--out", path("o")] + args)
            XCTAssertEqual(r.status, 1, "\(args)")
            XCTAssertTrue(r.stderr.contains(text), "\(args): \(r.stderr)")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: path("o/last.npy")))
        }
    }

    /// Synthetic states: 2 layers, 4 features, 400 train + 200 dev examples; only feature 2 of the last token's state
    /// after layer 1 holds the label (±0.5, uniform noise of width 0.3); everything else is uniform noise.
    private func writeSyntheticStates() throws {
        let L = 2, d = 4
        var state: UInt64 = 7
        func uniform() -> Float {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Float(state >> 40) / Float(1 << 24) - 0.5
        }
        for (folder, n) in [("train", 400), ("dev", 200)] {
            let labels = (0..<n).map { Int32(($0 * 7 + 3) % 5 < 2 ? 1 : 0) }
            var last: [Float] = [], mean: [Float] = []
            for y in labels {
                for v in 0..<(L + 2) {
                    for j in 0..<d { last.append(v == 1 && j == 2 ? Float(y) - 0.5 + 0.3 * uniform() : uniform()) }
                }
                for _ in 0..<((L + 1) * d) { mean.append(uniform()) }
            }
            try FileManager.default.createDirectory(atPath: path(folder), withIntermediateDirectories: true)
            for (name, values, shape) in [("last", last, [n, L + 2, d]), ("mean", mean, [n, L + 1, d])] {
                let w = try NPYFile.Writer(path: path("\(folder)/\(name).npy"), type: .float32, shape: shape)
                try w.append(values)
                try w.commit()
            }
            let w = try NPYFile.Writer(path: path("\(folder)/labels.npy"), type: .int32, shape: [n])
            try w.append(labels)
            try w.commit()
        }
    }

    /// Scripts/probe_linear.py finds the one layer whose last-token state holds the label and scores it on dev;
    /// a layer of noise stays near chance. Synthetic arrays: 2 layers, 4 features, 400 + 200 examples.
    func testLinearProbeFindsTheLayerThatHoldsTheLabel() throws {
        try writeSyntheticStates()
        let r = try ReferenceScripts.run(
            "probe_linear.py", [path("train"), path("dev"), "--heldout", "100", "--every", "1", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let report = try ToolHarness.json(r.stdout)
        let probes = try XCTUnwrap(report["probes"] as? [[String: Any]])
        func dev(_ name: String) -> Double { probes.first { $0["probe"] as? String == name }?["dev"] as? Double ?? -1 }
        XCTAssertEqual(dev("logistic, last token, layer 1"), 1.0)
        XCTAssertLessThan(dev("logistic, last token, layer 2"), 0.75)
        XCTAssertGreaterThan(dev("logistic, last token, layer 2"), 0.25)
        XCTAssertLessThan(dev("logistic, token mean, layer 1"), 0.75)
        XCTAssertEqual((report["bestByHeldout"] as? [String: Any])?["dev"] as? Double, 1.0)
    }

    /// Scripts/readout_adam.py (a multi-layer readout trained as qst-tune trains) learns the synthetic label in both
    /// forms and both inputs; a bad form is one line naming the option.
    func testReadoutTrainedWithAdamFindsTheLabel() throws {
        try writeSyntheticStates()
        let r = try ReferenceScripts.run(
            "readout_adam.py",
            [
                path("train"), path("dev"), "--heldout", "100", "--epochs", "20", "--seeds", "1",
                "--lrs", "1e-2", "--json",
            ])
        XCTAssertEqual(r.status, 0, r.stderr)
        let rows = try XCTUnwrap(try ToolHarness.json(r.stdout)["readouts"] as? [[String: Any]])
        XCTAssertEqual(rows.count, 4)
        for row in rows {
            XCTAssertGreaterThanOrEqual(row["dev"] as? Double ?? -1, 0.95, "\(row)")
        }
        let bad = try ReferenceScripts.run("readout_adam.py", [path("train"), path("dev"), "--forms", "mlp"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("--forms: unknown form 'mlp'"), bad.stderr)
    }

    private func npyFloats(_ file: String, shape: [Int]) throws -> [Float] {
        let bytes = try Data(contentsOf: URL(fileURLWithPath: file))
        let header = NPYFile.header(.float32, shape: shape)
        XCTAssertEqual(Array(bytes.prefix(header.count)), header, file)
        let body = bytes.dropFirst(header.count)
        return [Float](unsafeUninitializedCapacity: body.count / 4) { buf, n in
            n = body.copyBytes(to: UnsafeMutableRawBufferPointer(buf)) / 4
        }
    }
}
