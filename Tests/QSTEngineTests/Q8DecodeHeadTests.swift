import XCTest
import QSTKernels
@testable import QSTEngine

/// The int8 head copy decoding uses (`FrozenModel.decodeLogits`, q8.h) on SmolLM2's tied BF16 head:
/// every logit within the bound of int8 weights (per 64-block scale) times int8 x (per 32-group scale)
/// against a float64 product with the BF16 weights, and each row's bits independent of its batch-mates.
final class Q8DecodeHeadTests: XCTestCase {
    func testDecodeLogitsWithinTheQ8BoundAndRowIndependent() throws {
        try Reference.requireRealModelBuild()
        let model = try FrozenModel(
            path: try RealModelTests.artifact("nf4"), options: EngineOptions(matmulPath: .kernelsAuto))
        let ids: [Int32] = [1, 504, 3458, 282, 1345, 314, 253, 2093, 30, 378, 2361, 4096]
        let T = ids.count, d = model.headInputSize, V = model.vocabSize, rows = 3
        let h = try model.forward(ids: ids, batch: 1, newTokens: T)
        let x = h.constPointer + (T - rows) * d
        let got = model.decodeLogits(hidden: x, rows: rows).array
        guard case .bf16(let w) = model.head.storage else { return XCTFail("SmolLM2's head is expected in BF16") }
        guard model.decodeHead != nil else {
            // No vector Q8 path (QST_KERNELS=scalar): decoding must use the BF16 head itself.
            XCTAssertEqual(qst_q8_best_path(), Int32(QST_Q8_SCALAR.rawValue))
            XCTAssertEqual(got, model.logits(hidden: x, rows: rows).array)
            return
        }
        for r in 0..<rows {
            let alone = model.decodeLogits(hidden: x + r * d, rows: 1).array
            XCTAssertEqual(alone, Array(got[(r * V)..<((r + 1) * V)]), "row \(r) must not depend on the other rows")
        }
        func bf16(_ bits: UInt16) -> Double { Double(Float(bitPattern: UInt32(bits) << 16)) }
        var worst = 0.0, failures = 0, errSq = 0.0, refSq = 0.0
        for r in 0..<rows {
            let xr = x + r * d
            let groupMax = (0..<d).map { e in (e / 32 * 32..<e / 32 * 32 + 32).map { abs(Double(xr[$0])) }.max()! }
            for j in 0..<V {
                let row = w + j * d
                var exact = 0.0, bound = 0.0, magnitude = 0.0
                for b in 0..<(d / 64) {
                    let blockMax = (b * 64..<b * 64 + 64).map { abs(bf16(row[$0])) }.max()!
                    for e in b * 64..<b * 64 + 64 {
                        let wv = bf16(row[e]), xv = Double(xr[e])
                        exact += wv * xv
                        magnitude += abs(wv * xv)
                        // int8 weight: off by at most blockMax / 254; int8 x: by at most groupMax / 254.
                        bound += (blockMax * abs(xv) + (abs(wv) + blockMax / 254) * groupMax[e]) / 254
                    }
                }
                let err = abs(Double(got[r * V + j]) - exact)
                errSq += err * err; refSq += exact * exact
                let limit = bound * 1.01 + 1e-5 * magnitude + 1e-6
                if !(err <= limit) { failures += 1 }  // NaN fails too
                worst = max(worst, err / limit)
            }
        }
        XCTAssertEqual(failures, 0, "logits outside the Q8 bound (worst error / bound \(worst))")
        print("Q8 decode head: worst error / bound \(worst), relative Frobenius error \((errSq / refSq).squareRoot())")
    }
}
