import Foundation
import QSTKernels
import XCTest

/// `small_gemv.h`: the side network's decode products. Every path this CPU has must give the scalar
/// reference's exact bits (the header's formula: one lane per output, fused multiply-adds in a fixed
/// order), a row the same bits alone or among others, and the reference must be the product: within
/// float32 rounding of a float64 sum. (NEON: the same checks in Tests/KernelsC under Scripts/test-arm64.)
final class SmallGEMVTests: XCTestCase {
    static let paths: [(String, Int32)] = [
        ("avx512", Int32(QST_VEC_AVX512.rawValue)), ("avx2", Int32(QST_VEC_AVX2.rawValue)),
        ("neon", Int32(QST_VEC_NEON.rawValue)),
    ]
    /// (in, out): the SmolLM2 side shapes at r = 8 and 16, plus odd sizes for every tail and chain count.
    static let shapes = [
        (576, 16), (16, 72), (72, 72), (72, 24), (72, 192), (192, 72), (72, 576), (36, 36), (36, 12),
        (1, 1), (3, 5), (7, 17), (100, 33), (17, 97), (33, 129), (5, 300), (250, 8),
    ]

    private func run(
        _ path: Int32, in k: Int, out m: Int, rows n: Int, x: [Float], wt: [Float], bias: [Float]?,
        accumulate: Bool, y0: [Float], ldy: Int
    ) -> [Float]? {
        var y = y0
        let ld = Int(qst_small_gemv_ld(Int64(m)))
        let rc = bias.withOptionalPointer { b in
            qst_small_gemv(
                &y, Int64(ldy), x, Int64(k), Int64(n), wt, Int64(ld), Int64(k), Int64(m), b, accumulate ? 1 : 0, path)
        }
        return rc == 0 ? y : nil
    }

    func testEveryPathGivesTheScalarBitsAndTheProduct() throws {
        var rng = SplitMix(seed: 5)
        let scalar = Int32(QST_VEC_SCALAR.rawValue)
        var ranVector = false
        for (k, m) in Self.shapes {
            let n = 3, ldy = m + 2
            let w = (0..<(m * k)).map { _ in Float(rng.unit() * 2 - 1) }
            let x = (0..<(n * k)).map { _ in Float(rng.unit() * 4 - 2) }
            let bias = (0..<m).map { _ in Float(rng.unit() - 0.5) }
            let y0 = (0..<(n * ldy)).map { _ in Float(rng.unit() - 0.5) }
            var wt = [Float](repeating: .nan, count: k * Int(qst_small_gemv_ld(Int64(m))))
            qst_small_gemv_pack(&wt, w, Int64(k), Int64(m))
            for (accumulate, b) in [(false, nil), (true, bias), (false, bias)] as [(Bool, [Float]?)] {
                let ref = try XCTUnwrap(
                    run(
                        scalar, in: k, out: m, rows: n, x: x, wt: wt, bias: b, accumulate: accumulate,
                        y0: y0, ldy: ldy))
                // The reference is the product (float64 sums; float32 rounding of k terms of size ≤ 2).
                for r in 0..<n {
                    for j in 0..<m {
                        var s = 0.0
                        for i in 0..<k { s += Double(x[r * k + i]) * Double(w[j * k + i]) }
                        if accumulate { s += Double(y0[r * ldy + j]) }
                        if let b { s += Double(b[j]) }
                        XCTAssertEqual(
                            Double(ref[r * ldy + j]), s, accuracy: 1e-6 * Double(k + 2) * 2,
                            "scalar \(m)×\(k) row \(r) out \(j)")
                    }
                    // Padding between rows stays as it was.
                    for j in m..<ldy { XCTAssertEqual(ref[r * ldy + j], y0[r * ldy + j]) }
                }
                for (name, path) in Self.paths where qst_vec_supported(path) != 0 {
                    ranVector = true
                    let got = try XCTUnwrap(
                        run(
                            path, in: k, out: m, rows: n, x: x, wt: wt, bias: b, accumulate: accumulate,
                            y0: y0, ldy: ldy), "\(name) refused")
                    XCTAssertEqual(
                        got.map(\.bitPattern), ref.map(\.bitPattern), "\(name) \(m)×\(k) accumulate \(accumulate)")
                    // Row 1 alone: the same bits as among three rows.
                    let alone = try XCTUnwrap(
                        run(
                            path, in: k, out: m, rows: 1, x: Array(x[k...]), wt: wt, bias: b,
                            accumulate: accumulate, y0: Array(y0[ldy...]), ldy: ldy))
                    XCTAssertEqual(
                        alone[0..<m].map(\.bitPattern), got[ldy..<(ldy + m)].map(\.bitPattern), "\(name) row alone")
                }
            }
        }
        #if arch(x86_64) || arch(arm64)
            if qst_cpu_features() & QST_CPU_FORCED_SCALAR == 0 {
                XCTAssertTrue(ranVector, "no vector small_gemv path ran")
            }
        #endif
    }

    /// bfloat16 weights (`qst_small_gemv_bf16`, the side packs of `--matmul auto`): the pack holds each weight's
    /// nearest bfloat16 (ties to even; found here from the float64 distances, not the kernels' bit trick), the
    /// scalar reference is the product with those weights, and every path gives its bits, alone or not.
    func testBFloat16WeightsOnEveryPath() throws {
        var rng = SplitMix(seed: 17)
        let scalar = Int32(QST_VEC_SCALAR.rawValue)
        func nearest(_ f: Float) -> UInt16 {
            let lo = f.bitPattern & 0xFFFF_0000, hi = lo &+ 0x1_0000
            let dl = abs(Double(f) - Double(Float(bitPattern: lo))), dh = abs(Double(Float(bitPattern: hi)) - Double(f))
            if dl != dh { return UInt16((dl < dh ? lo : hi) >> 16) }
            return UInt16(((lo >> 16) & 1 == 0 ? lo : hi) >> 16)
        }
        for (k, m) in [(576, 16), (72, 192), (36, 12), (7, 17), (33, 129)] {
            let n = 3, ldy = m + 2, ld = Int(qst_small_gemv_ld(Int64(m)))
            var w = (0..<(m * k)).map { _ in Float(rng.unit() * 2 - 1) * 0.3 }
            w[0] = 1.00390625  // halfway between 1.0 and the next bfloat16: stays 1.0 (even)
            let x = (0..<(n * k)).map { _ in Float(rng.unit() * 4 - 2) }
            let y0 = (0..<(n * ldy)).map { _ in Float(rng.unit() - 0.5) }
            var wt = [UInt16](repeating: 0xFFFF, count: k * ld)
            qst_small_gemv_pack_bf16(&wt, w, Int64(k), Int64(m))
            for i in 0..<k {
                for j in 0..<ld { XCTAssertEqual(wt[i * ld + j], j < m ? nearest(w[j * k + i]) : 0, "pack \(i),\(j)") }
            }
            XCTAssertEqual(wt[0], 0x3F80)
            func run(_ path: Int32, rows: Int, x: ArraySlice<Float>, y: ArraySlice<Float>) -> [Float]? {
                var y = Array(y), x = Array(x)
                let rc = qst_small_gemv_bf16(
                    &y, Int64(ldy), &x, Int64(k), Int64(rows), wt, Int64(ld), Int64(k), Int64(m), nil, 1, path)
                return rc == 0 ? y : nil
            }
            let ref = try XCTUnwrap(run(scalar, rows: n, x: x[...], y: y0[...]))
            for r in 0..<n {
                for j in 0..<m {
                    var s = Double(y0[r * ldy + j])
                    for i in 0..<k {
                        s += Double(x[r * k + i]) * Double(Float(bitPattern: UInt32(wt[i * ld + j]) << 16))
                    }
                    XCTAssertEqual(Double(ref[r * ldy + j]), s, accuracy: 1e-6 * Double(k + 2), "scalar \(m)×\(k)")
                }
            }
            for (name, path) in Self.paths where qst_vec_supported(path) != 0 {
                let got = try XCTUnwrap(run(path, rows: n, x: x[...], y: y0[...]), "\(name) refused")
                XCTAssertEqual(got.map(\.bitPattern), ref.map(\.bitPattern), "\(name) \(m)×\(k)")
                let alone = try XCTUnwrap(run(path, rows: 1, x: x[k...], y: y0[ldy...]))
                XCTAssertEqual(alone[0..<m].map(\.bitPattern), got[ldy..<(ldy + m)].map(\.bitPattern), "\(name) alone")
            }
        }
    }

    func testBadSizesAndUnsupportedPathsAreRefused() {
        var y = [Float](repeating: 0, count: 32)
        let x = [Float](repeating: 1, count: 32), wt = [Float](repeating: 1, count: 16 * 16)
        XCTAssertEqual(qst_small_gemv(&y, 16, x, 16, 1, wt, 8, 16, 16, nil, 0, -1), -1, "ldw below the padded width")
        XCTAssertEqual(qst_small_gemv(&y, 8, x, 16, 1, wt, 16, 16, 16, nil, 0, -1), -1, "ldy below out")
        XCTAssertEqual(qst_small_gemv(&y, 16, x, 16, -1, wt, 16, 16, 16, nil, 0, -1), -1, "negative rows")
        for (name, path) in Self.paths where qst_vec_supported(path) == 0 {
            XCTAssertEqual(qst_small_gemv(&y, 16, x, 16, 1, wt, 16, 16, 16, nil, 0, path), -1, "\(name) is not here")
        }
    }
}

private extension Optional where Wrapped == [Float] {
    func withOptionalPointer<R>(_ body: (UnsafePointer<Float>?) -> R) -> R {
        switch self {
        case .none: return body(nil)
        case .some(let a): return a.withUnsafeBufferPointer { body($0.baseAddress) }
        }
    }
}
