import XCTest
import QSTEvaluation
import QSTFormat
@testable import QSTEngine
import QSTTestSupport

/// `KVCache.truncate(to:)` and `PrefixReusingScorer`: a prompt that continues a truncated cache gives what the
/// prompt's own forward gives, so `qst-eval choice` may run a subject's shots once.
final class PrefixReuseTests: XCTestCase {
    func testTruncateRecountsPositionsAndRefusesWhatItCannotKeep() throws {
        let cache = KVCache(layers: 1, batch: 2, capacity: 8, kvDim: 4)
        // Sequence 1 has two padding rows in the first step.
        _ = try cache.append(newTokens: 4, valid: [1, 1, 1, 1, 1, 1, 0, 0])
        cache.commit(newTokens: 4)
        _ = try cache.append(newTokens: 2, valid: [1, 1, 1, 1])
        cache.commit(newTokens: 2)
        XCTAssertEqual(cache.positions, [6, 4])
        try cache.truncate(to: 3)
        XCTAssertEqual(cache.length, 3)
        XCTAssertEqual(cache.positions, [3, 2], "positions count the kept real rows")
        // The next rows continue at the kept positions.
        XCTAssertEqual(try cache.append(newTokens: 1, valid: [1, 1]), [3, 2])
        cache.commit(newTokens: 1)
        XCTAssertThrowsError(try cache.truncate(to: 5), "cannot keep rows the cache does not hold")
        XCTAssertThrowsError(try cache.truncate(to: -1))
        let ring = KVCache(layers: 1, batch: 1, capacity: 8, kvDim: 4, window: 4)
        XCTAssertThrowsError(try ring.truncate(to: 0), "a ring has overwritten what it would roll back to")
    }

    /// Prompts that share prefixes of several lengths with the one before (including none, all but the last token,
    /// and a prompt that is a prefix of the one before): each last row equals the prompt's forward without a cache.
    func testScorerGivesEachPromptsOwnForward() throws {
        let p: [Int32] = [1, 5, 9, 200, 31, 77, 150, 4, 18, 99, 12]
        let prompts: [[Int32]] = [
            p + [7, 42, 43], p + [260, 5], p + [7, 42, 43], [3] + p, [3] + p + [8], [3] + p, Array(p.prefix(4)),
        ]
        // Tokens each prompt shares with the one before (its last token always runs).
        let shared = [0, 11, 11, 0, 12, 11, 0]
        for name in ["tiny-llama3", "tiny-qwen2"] {
            for path in [MatmulPath.kernelsExact, .kernelsAuto] {
                let model = try FrozenModel(path: try Reference.tiny(name), options: EngineOptions(matmulPath: path))
                let e = model.headInputSize
                let reusing = PrefixReusingScorer(model: model, capacity: 32)
                let whole = PrefixReusingScorer(model: model, capacity: 32, reuse: false)
                for (k, ids) in prompts.enumerated() {
                    let full = try model.forward(ids: ids, batch: 1, newTokens: ids.count)
                    let want = Array(UnsafeBufferPointer(start: full.constPointer + (ids.count - 1) * e, count: e))
                    let got = try reusing.lastHeadInput(ids), alone = try whole.lastHeadInput(ids)
                    XCTAssertLessThan(relativeFrobenius(got, want), 1e-6, "\(name) \(path) prompt \(k), reused")
                    XCTAssertLessThan(relativeFrobenius(alone, want), 1e-6, "\(name) \(path) prompt \(k), whole")
                }
                XCTAssertEqual(reusing.tokensReused, shared.reduce(0, +))
                XCTAssertEqual(reusing.tokensRun + reusing.tokensReused, prompts.reduce(0) { $0 + $1.count })
                XCTAssertEqual(whole.tokensReused, 0)
            }
        }
        let model = try FrozenModel(path: try Reference.tiny("tiny-llama3"))
        XCTAssertThrowsError(
            try PrefixReusingScorer(model: model, capacity: 4).lastHeadInput(p), "longer than capacity")
        XCTAssertThrowsError(try PrefixReusingScorer(model: model, capacity: 4).lastHeadInput([]))
    }

    /// SmolLM2-135M-Instruct in NF4, 5-shot MMLU: the answer letters' logits with the shots reused equal those of
    /// every prompt run whole, and the shots are run once. On the exact path up to float32 reordering (measured
    /// ≤ 6.2e-7 relative); on `auto` the int16 products' rounding of x turns such reorderings into whole rounding
    /// steps, as it does for the same rows inside any longer forward (measured ≤ 2.5e-4 on AVX2, against the path's
    /// own distance to exact products of `RealModelTests.autoBound`).
    func testMMLUWithReusedShotsMatchesWholePromptsOnTheRealModel() throws {
        let tokenizer = try SafetensorsWeightSource(path: try Reference.realModel("f32")).loadTokenizer()
        let mmlu = try TestRequirement.sharedData("mmlu")
        let shots = try MMLUData.load(dir: mmlu, subject: "astronomy", split: "dev")
        let questions = Array(try MMLUData.load(dir: mmlu, subject: "astronomy", split: "test").prefix(3))
        for (path, bound) in [(MatmulPath.kernelsExact, 1e-5), (.kernelsAuto, 1e-3)] {
            let model = try FrozenModel(
                path: try RealModelTests.artifact("nf4"), options: EngineOptions(matmulPath: path))
            let reusing = try MultipleChoiceEvaluator(model: model, tokenizer: tokenizer)
            let whole = try MultipleChoiceEvaluator(
                model: model, tokenizer: tokenizer,
                scorer: PrefixReusingScorer(model: model, capacity: 2048, reuse: false))
            for q in questions {
                let a = try reusing.scores(subject: "astronomy", shots: shots, question: q)
                let b = try whole.scores(subject: "astronomy", shots: shots, question: q)
                XCTAssertFalse(a.contains { !$0.isFinite })
                XCTAssertLessThan(relativeFrobenius(a, b), bound, "\(path): letter logits, reused shots vs whole")
            }
            // The prompt before the first question's own text (instruction and five shots) is run once.
            XCTAssertGreaterThan(reusing.scorer.tokensReused, 2 * 400)
            XCTAssertLessThan(reusing.scorer.tokensRun, whole.scorer.tokensRun / 2)
        }
    }
}
