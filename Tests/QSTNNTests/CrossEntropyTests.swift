import Foundation
import XCTest
@testable import QSTNN

final class CrossEntropyTests: XCTestCase {
    /// Full-logits mean cross-entropy in Double.
    static func refLoss(_ h: [Double], _ w: [Double], labels: [Int32], n: Int, d: Int, V: Int) -> Double {
        let logits = refLinear(h, w, nil, n: n, inF: d, outF: V)
        var total = 0.0, count = 0
        for i in 0..<n where labels[i] != -100 {
            let row = Array(logits[(i * V)..<(i * V + V)]), m = row.max()!
            let lse = m + log(row.reduce(0) { $0 + exp($1 - m) })
            total += lse - row[Int(labels[i])]
            count += 1
        }
        return total / Double(count)
    }

    func testChunkedLossAndGradientMatchFullLogits() throws {
        let k = Keep(); defer { withExtendedLifetime(k) {} }
        let n = 7, d = 5, V = 11
        var rng = TestRandom(30)
        let h = rng.values(n * d, scale: 2), w = rng.values(V * d, scale: 2)
        let labels: [Int32] = [3, -100, 0, 10, 7, -100, 3]
        let hb = k.f(h), wb = k.f(w), lb = k.ints(labels)
        let expectedLoss = Self.refLoss(h, w, labels: labels, n: n, d: d, V: V)
        let expectedGrad = finiteDifference(h) { Self.refLoss($0, w, labels: labels, n: n, d: d, V: V) }

        let f32 = F32HeadRows(weight: wb, vocabSize: V, dim: d)
        let decoded = DecodedHeadRows(vocabSize: V, dim: d, tileRows: 4) { start, count, dest in
            dest.update(from: wb + start * d, count: count * d)
        }
        for (name, chunk) in [("one chunk", 128), ("chunks of 2", 2)] {
            for head in [f32, decoded] as [any HeadRows] {
                let dh = k.zeros(n * d)
                let result = try ChunkedCrossEntropy.lossAndGradient(
                    hidden: hb, labels: lb, n: n, head: head,
                    dHidden: dh, chunkRows: chunk)
                XCTAssertEqual(result.count, 5)
                XCTAssertEqual(result.mean, expectedLoss, accuracy: 1e-5, name)
                assertClose(read(dh, n * d), expectedGrad, rtol: 1e-4, atol: 1e-6, "\(name) \(type(of: head)) dHidden")
            }
        }
        // Loss only, and a custom gradient scale (sum instead of mean).
        let lossOnly = try ChunkedCrossEntropy.lossAndGradient(hidden: hb, labels: lb, n: n, head: f32, dHidden: nil)
        XCTAssertEqual(lossOnly.lossSum, expectedLoss * 5, accuracy: 1e-4)
        let dh = k.zeros(n * d)
        _ = try ChunkedCrossEntropy.lossAndGradient(
            hidden: hb, labels: lb, n: n, head: decoded, dHidden: dh,
            gradScale: 1, chunkRows: 3)
        assertClose(read(dh, n * d), expectedGrad.map { $0 * 5 }, rtol: 1e-4, atol: 1e-5, "sum gradient")
    }

    func testIgnoredAndInvalidLabels() throws {
        let k = Keep(); defer { withExtendedLifetime(k) {} }
        let head = F32HeadRows(weight: k.f([1, 0, 0, 1]), vocabSize: 2, dim: 2)
        let dh = k.zeros(4)
        let none = try ChunkedCrossEntropy.lossAndGradient(
            hidden: k.f([1, 2, 3, 4]), labels: k.ints([-100, -100]),
            n: 2, head: head, dHidden: dh)
        XCTAssertEqual(none.count, 0)
        XCTAssertEqual(none.mean, 0)
        XCTAssertEqual(read(dh, 4), [0, 0, 0, 0])
        XCTAssertThrowsError(
            try ChunkedCrossEntropy.lossAndGradient(
                hidden: k.f([1, 2]), labels: k.ints([2]), n: 1,
                head: head, dHidden: nil)
        ) {
            XCTAssertEqual(($0 as? QSTError)?.kind, .tokenOutOfRange, "\($0)")
        }
        XCTAssertThrowsError(
            try ChunkedCrossEntropy.candidateLogits(
                out: k.zeros(1), hidden: k.f([1, 2]), n: 1,
                head: head, candidates: [5])
        ) {
            XCTAssertEqual(($0 as? QSTError)?.kind, .tokenOutOfRange, "\($0)")
        }
    }

    func testCandidateAndFullLogits() throws {
        let k = Keep(); defer { withExtendedLifetime(k) {} }
        let n = 3, d = 4, V = 9
        var rng = TestRandom(31)
        let h = rng.values(n * d), w = rng.values(V * d)
        let full = refLinear(h, w, nil, n: n, inF: d, outF: V)
        let head = DecodedHeadRows(vocabSize: V, dim: d, tileRows: 2) { [w] start, count, dest in
            for i in 0..<(count * d) { dest[i] = Float(w[start * d + i]) }
        }
        let candidates: [Int32] = [8, 0, 4]
        let out = k.zeros(n * 3)
        try ChunkedCrossEntropy.candidateLogits(out: out, hidden: k.f(h), n: n, head: head, candidates: candidates)
        let expected = (0..<n).flatMap { i in candidates.map { full[i * V + Int($0)] } }
        assertClose(read(out, n * 3), expected, rtol: 1e-5, atol: 1e-6, "candidates")
        let all = k.zeros(n * V)
        ChunkedCrossEntropy.logits(out: all, hidden: k.f(h), n: n, head: head)
        assertClose(read(all, n * V), full, rtol: 1e-5, atol: 1e-6, "full logits")
    }
}
