import XCTest
import QSTTestSupport
import QSTFormat
@testable import QSTEngine
@testable import QSTEvaluation

/// Perplexity, model comparison and the MMLU pieces, checked against numbers computed here from the
/// NumPy reference's float64 logits.
final class EvaluationTests: XCTestCase {
    static func tokens(_ n: Int, vocab: Int, seed: UInt64) -> [Int32] {
        var s = seed
        return (0..<n).map { _ in
            s = s &* 6364136223846793005 &+ 1442695040888963407; return Int32((s >> 33) % UInt64(vocab))
        }
    }

    static func logSoftmax(_ row: ArraySlice<Double>) -> [Double] {
        let m = row.max()!
        let lse = m + Foundation.log(row.reduce(0) { $0 + Foundation.exp($1 - m) })
        return row.map { $0 - lse }
    }

    func testWindowPlanScoresEveryTokenOnce() throws {
        for (n, ctx, stride) in [(40, 16, 8), (40, 16, 16), (17, 16, 5), (5, 16, 16), (100, 7, 3)] {
            let w = try EvaluationWindow.plan(tokenCount: n, ctx: ctx, stride: stride)
            var scored: [Int] = []
            for x in w {
                XCTAssertLessThanOrEqual(x.end - x.begin, ctx)
                XCTAssertGreaterThan(x.firstScored, x.begin)
                scored += Array(x.firstScored..<x.end)
            }
            // Overlapping windows score every token but the first exactly once; disjoint windows (stride = ctx)
            // cannot score a window's first token, which has no context inside it.
            let expected = stride < ctx ? Array(1..<n) : Array(1..<n).filter { $0 % ctx != 0 }
            XCTAssertEqual(scored, expected, "n \(n) ctx \(ctx) stride \(stride)")
        }
        XCTAssertThrowsError(try EvaluationWindow.plan(tokenCount: 10, ctx: 4, stride: 5))
    }

    func testPerplexityMatchesReferenceLogits() throws {
        let folder = try Reference.tiny("tiny-qwen2")
        let ids = Self.tokens(40, vocab: 300, seed: 11)
        let ctx = 16, stride = 8
        let windows = try EvaluationWindow.plan(tokenCount: ids.count, ctx: ctx, stride: stride)
        let ref = try Reference.logits(model: folder, sequences: windows.map { Array(ids[$0.begin..<$0.end]) })
        let T = ref.shape[1], V = ref.shape[2]
        var nll = 0.0, count = 0
        for (b, w) in windows.enumerated() {
            for p in w.firstScored..<w.end {
                let row = (b * T + (p - 1 - w.begin)) * V
                nll -= Self.logSoftmax(ref.values[row..<row + V])[Int(ids[p])]
                count += 1
            }
        }
        let model = try FrozenModel(path: folder, options: EngineOptions(matmulPath: .dequantizeSGEMM))
        for batch in [1, 2] {
            let r = try Perplexity.evaluate(model: model, tokens: ids, ctx: ctx, stride: stride, batch: batch)
            XCTAssertEqual(r.scored, count)
            XCTAssertEqual(r.meanNLL, nll / Double(count), accuracy: 1e-4 * nll / Double(count))
            XCTAssertEqual(r.windows.count, windows.count)
        }
    }

    func testComparisonMatchesReferenceKL() throws {
        let folder = try Reference.tiny("tiny-qwen2")
        let qst4 = Reference.tempPath("cmp.qst4"), decoded = Reference.tempPath("cmp-dq.safetensors")
        defer { for f in [qst4, decoded] { try? FileManager.default.removeItem(atPath: f) } }
        try buildContainer(from: folder, to: qst4)
        try writeDecodedWeights(container: qst4, to: decoded)
        let ids = Self.tokens(24, vocab: 300, seed: 5)
        let p = try Reference.logits(model: folder, sequences: [ids])
        let q = try Reference.logits(model: folder, sequences: [ids], override: decoded)
        let V = p.shape[2]
        var kl = 0.0, agree = 0
        for t in 0..<(ids.count - 1) {
            let lp = Self.logSoftmax(p.values[(t * V)..<((t + 1) * V)]),
                lq = Self.logSoftmax(q.values[(t * V)..<((t + 1) * V)])
            kl += zip(lp, lq).reduce(0) { $0 + Foundation.exp($1.0) * ($1.0 - $1.1) }
            if lp.indices.max(by: { lp[$0] < lp[$1] }) == lq.indices.max(by: { lq[$0] < lq[$1] }) { agree += 1 }
        }
        let n = Double(ids.count - 1)
        let model = try FrozenModel(path: qst4, options: EngineOptions(matmulPath: .kernelsExact))
        let reference = try FrozenModel(path: folder, options: EngineOptions(matmulPath: .dequantizeSGEMM))
        let r = try ModelComparison.evaluate(model: model, reference: reference, tokens: ids, ctx: 32)
        XCTAssertEqual(r.positions, ids.count - 1)
        XCTAssertGreaterThan(kl / n, 1e-5, "NF4 should change the distributions a little")
        XCTAssertEqual(r.meanKL, kl / n, accuracy: 0.02 * kl / n + 1e-7)
        XCTAssertEqual(r.top1Agreement, Double(agree) / n, accuracy: 1e-9)
        let same = try ModelComparison.evaluate(model: reference, reference: reference, tokens: ids, ctx: 32)
        XCTAssertEqual(same.meanKL, 0, accuracy: 1e-9)
        XCTAssertEqual(same.top1Agreement, 1)
    }

    func testCSVQuotingAndMMLUPrompt() throws {
        let rows = try CSVReader.parse("question,choice0\n\"a, \"\"b\"\"\nc\",d\r\nx,\n", origin: "t.csv")
        XCTAssertEqual(rows, [["question", "choice0"], ["a, \"b\"\nc", "d"], ["x", ""]])
        XCTAssertThrowsError(try CSVReader.parse("\"open,1\n", origin: "t.csv")) {
            XCTAssertTrue("\($0)".contains("t.csv"))
        }
        let q = ChoiceQuestion(question: "What is 2+2?", choices: ["3", "4", "5", "6"], answer: 1)
        let p = MultipleChoiceEvaluator.prompt(subject: "elementary_mathematics", shots: [q], question: q)
        XCTAssertEqual(
            p,
            """
            The following are multiple choice questions (with answers) about elementary mathematics.

            What is 2+2?
            A. 3
            B. 4
            C. 5
            D. 6
            Answer: B

            What is 2+2?
            A. 3
            B. 4
            C. 5
            D. 6
            Answer:
            """)
    }

    func testMMLUFolderLoads() throws {
        let path = try TestRequirement.sharedData("mmlu")
        let subjects = try MMLUData.subjects(in: path)
        XCTAssertEqual(subjects.count, 57)
        let dev = try MMLUData.load(dir: path, subject: "anatomy", split: "dev")
        XCTAssertEqual(dev.count, 5)
        XCTAssertEqual(dev[0].answer, 3)
        XCTAssertEqual(try MMLUData.load(dir: path, subject: "abstract_algebra", split: "test").count, 100)
    }
}
