import Foundation
import QSTFormat
import QSTNN
import XCTest
import QSTTestSupport
@testable import QSTSide

/// GLUE metrics: hand-computed cases, then random cases against Scripts/glue_metrics_reference.py (standard
/// library Python written from the definitions; skipped without the venv unless QST_REQUIRE_REFERENCE=1).
final class GLUEMetricsTests: XCTestCase {
    func testHandComputedBinaryCase() {
        // TP 2, FP 1, FN 1, TN 1.
        let p = [1, 1, 0, 0, 1], g = [1, 0, 0, 1, 1]
        XCTAssertEqual(GLUEMetrics.accuracy(predicted: p, gold: g), 0.6, accuracy: 1e-12)
        XCTAssertEqual(GLUEMetrics.f1(predicted: p, gold: g), 4.0 / 6.0, accuracy: 1e-12)
        XCTAssertEqual(GLUEMetrics.matthews(predicted: p, gold: g), 1.0 / 6.0, accuracy: 1e-12)
        // Perfect and inverted predictions; a constant predictor has MCC 0 (scikit-learn's convention).
        XCTAssertEqual(GLUEMetrics.matthews(predicted: g, gold: g), 1, accuracy: 1e-12)
        XCTAssertEqual(GLUEMetrics.matthews(predicted: g.map { 1 - $0 }, gold: g), -1, accuracy: 1e-12)
        XCTAssertEqual(GLUEMetrics.matthews(predicted: [1, 1, 1, 1, 1], gold: g), 0)
        XCTAssertEqual(GLUEMetrics.f1(predicted: [0, 0, 0, 0, 0], gold: g), 0)
    }

    func testHandComputedCorrelations() {
        // y's ranks with the tie averaged: [1, 2, 3.5, 5, 3.5]; r = 8 / √95.
        XCTAssertEqual(GLUEMetrics.ranks([5, 6, 7, 8, 7]), [1, 2, 3.5, 5, 3.5])
        XCTAssertEqual(GLUEMetrics.spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]), 8 / 95.0.squareRoot(), accuracy: 1e-12)
        // Σdxdy = 5, Σdx² = 2, Σdy² = 114/9.
        XCTAssertEqual(GLUEMetrics.pearson([1, 2, 3], [2, 4, 7]), 5 / (2 * 114.0 / 9).squareRoot(), accuracy: 1e-12)
        XCTAssertEqual(GLUEMetrics.pearson([1, 1, 1], [2, 4, 7]), 0)
    }

    func testOfficialMetricsPerTask() throws {
        XCTAssertEqual(try GLUETask.named("sst2").officialMetrics, ["accuracy"])
        XCTAssertEqual(try GLUETask.named("rte").officialMetrics, ["accuracy"])
        XCTAssertEqual(try GLUETask.named("mrpc").officialMetrics, ["f1", "accuracy"])
        XCTAssertEqual(try GLUETask.named("cola").officialMetrics, ["matthews_correlation"])
        let m = try GLUETask.named("mrpc").metrics(predicted: [1, 1, 0, 0, 1], gold: [1, 0, 0, 1, 1])
        XCTAssertEqual(m["f1"] ?? -1, 4.0 / 6.0, accuracy: 1e-12)
        XCTAssertEqual(m["accuracy"] ?? -1, 0.6, accuracy: 1e-12)
    }

    func testRandomCasesMatchPythonReference() throws {
        let python = TestEnvironment.python
        guard FileManager.default.isExecutableFile(atPath: python) else {
            try TestRequirement.unavailable("GLUE metrics reference: no Python at \(python)")
        }
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Scripts/glue_metrics_reference.py").path
        var rng = SplitMix64(seed: 42)
        struct Case: Codable { var predicted: [Int]; var gold: [Int]; var x: [Double]; var y: [Double] }
        var cases: [Case] = []
        for c in 0..<40 {
            let n = 5 + Int(rng.next() % 60), classes = c % 4 == 3 ? 3 : 2
            let gold = (0..<n).map { _ in Int(rng.next() % UInt64(classes)) }
            // Mostly right, sometimes flipped, so metrics land everywhere in (−1, 1).
            let skill = Double(c) / 40
            let predicted = gold.map { g in Double(rng.nextFloat()) < skill ? g : Int(rng.next() % UInt64(classes)) }
            // Coarse values give ties, which Spearman must average.
            let x = (0..<n).map { _ in Double(rng.next() % 7) }
            let y = x.map { $0 * skill + Double(rng.next() % 5) }
            cases.append(Case(predicted: predicted, gold: gold, x: x, y: y))
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("qst-glue-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try JSONEncoder().encode(cases).write(to: URL(fileURLWithPath: dir + "/cases.json"))
        let proc = Process()
        proc.executableURL = URL(fileURLWithPath: python)
        proc.arguments = [script, dir + "/cases.json", dir + "/out.json"]
        try proc.run()
        proc.waitUntilExit()
        XCTAssertEqual(proc.terminationStatus, 0)
        let ref = try JSONDecoder().decode(
            [[String: Double]].self, from: Data(contentsOf: URL(fileURLWithPath: dir + "/out.json")))
        XCTAssertEqual(ref.count, cases.count)
        var distinctMCC = Set<Int>()
        for (c, r) in zip(cases, ref) {
            let got = [
                "accuracy": GLUEMetrics.accuracy(predicted: c.predicted, gold: c.gold),
                "f1": GLUEMetrics.f1(predicted: c.predicted, gold: c.gold),
                "matthews_correlation": GLUEMetrics.matthews(predicted: c.predicted, gold: c.gold),
                "pearson": GLUEMetrics.pearson(c.x, c.y), "spearman": GLUEMetrics.spearman(c.x, c.y),
            ]
            for (name, v) in got { XCTAssertEqual(v, r[name] ?? .nan, accuracy: 1e-9, "\(name) of \(c)") }
            distinctMCC.insert(Int((got["matthews_correlation"] ?? 0) * 10))
        }
        XCTAssertGreaterThan(distinctMCC.count, 5, "cases should cover a range of correlations")
    }
}
