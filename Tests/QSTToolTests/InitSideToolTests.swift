import Foundation
import QSTSide
import QSTTestSupport
import XCTest

/// qst-init-side's layer-gate start as a user gets it (Formats/RUNS.md §1.1): the reference's 0.5 for every
/// `--init` unless `--gate-init running-mean` asks for z_i = ln(i + 1); nothing else changes with the gates.
final class InitSideToolTests: ToolTestCase {
    func testGateStartOfEachInitialisation() throws {
        let config = path("config.json")
        try Data(
            #"{"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 6, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 100, "rms_norm_eps": 1e-5}"#
                .utf8
        ).write(to: URL(fileURLWithPath: config))
        let runs: [(args: [String], start: SideGateInit)] = [
            ([], .reference),
            (["--init", "reference"], .reference), (["--gate-init", "running-mean"], .runningMean),
            (["--init", "reference", "--gate-init", "running-mean"], .runningMean),
        ]
        var sides: [SideWeights] = []
        for (k, run) in runs.enumerated() {
            let r = try ok("qst-init-side", [config, "-o", path("side\(k)"), "--r", "4"] + run.args)
            XCTAssertTrue(r.stdout.contains("\(run.start.rawValue) gates"), r.stdout)
            let side = try SideWeightsIO.load(directory: path("side\(k)"))
            for i in 0..<6 {
                let z = side.value(side.config.gateName(i))
                XCTAssertTrue((0..<16).allSatisfy { z[$0] == run.start.logit(layer: i) }, "\(run.args) gate \(i)")
            }
            sides.append(side)
        }
        XCTAssertEqual(SideGateInit.runningMean.logit(layer: 5), Float(log(6.0)))
        let json = try ok(
            "qst-init-side", [config, "-o", path("json"), "--r", "4", "--gate-init", "running-mean", "--json"])
        XCTAssertEqual(try ToolHarness.json(json.stdout)["gateInit"] as? String, "running-mean")
        // base with either gate start: the same tensors apart from the gates.
        let a = sides[0], b = sides[2]
        XCTAssertEqual(b.config.mix, a.config.mix)
        for s in a.specs where !s.name.hasPrefix("model.z.") {
            XCTAssertTrue((0..<s.count).allSatisfy { a.value(s.name)[$0] == b.value(s.name)[$0] }, s.name)
        }
    }
}
