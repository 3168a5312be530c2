import Foundation
import QSTKernels
import XCTest

/// `side_decode_attention.h`: one query of the side network's cached attention over transposed keys and
/// values, on every path this CPU has, against a float64 evaluation of the header's formula (bound: float32
/// sums of up to a few hundred terms and a 2e-7 exp, as vecmath's tests), with and without a key mask.
final class SideDecodeAttentionTests: XCTestCase {
    static let paths: [(String, Int32)] = [
        ("scalar", Int32(QST_VEC_SCALAR.rawValue)), ("avx2", Int32(QST_VEC_AVX2.rawValue)),
        ("avx512", Int32(QST_VEC_AVX512.rawValue)), ("neon", Int32(QST_VEC_NEON.rawValue)),
    ]

    func testEveryPathMatchesFloat64() {
        var rng = SplitMix(seed: 11)
        for hd in [4, 8, 16] {
            for n in [1, 3, 15, 16, 17, 49, 100, 257] {
                let ld = n + 5
                let q = (0..<hd).map { _ in Float(rng.unit() * 4 - 2) }
                let kt = (0..<(hd * ld)).map { _ in Float(rng.unit() * 4 - 2) }
                let vt = (0..<(hd * ld)).map { _ in Float(rng.unit() * 2 - 1) }
                let scale = 1 / Float(hd).squareRoot()
                for masked in [false, true] {
                    let mask: [UInt8] = (0..<n).map { masked && ($0 % 3 == 1) ? 0 : 1 }
                    // float64 reference
                    var s = [Double](repeating: 0, count: n)
                    for j in 0..<n { for d in 0..<hd { s[j] += Double(q[d] * scale) * Double(kt[d * ld + j]) } }
                    let live = (0..<n).filter { mask[$0] != 0 }
                    let mx = live.map { s[$0] }.max() ?? 0
                    let z = live.reduce(0.0) { $0 + exp(s[$1] - mx) }
                    let want = (0..<hd).map { d in
                        live.reduce(0.0) { $0 + exp(s[$1] - mx) / z * Double(vt[d * ld + $1]) }
                    }
                    for (name, path) in Self.paths where qst_vec_supported(path) != 0 {
                        var out = [Float](repeating: .nan, count: hd), scratch = [Float](repeating: 0, count: n)
                        let rc = mask.withUnsafeBufferPointer { m in
                            qst_side_decode_attention(
                                &out, q, kt, vt, Int64(ld), Int64(n), Int64(hd), scale,
                                masked ? m.baseAddress : nil, &scratch, path)
                        }
                        XCTAssertEqual(rc, 0, name)
                        for d in 0..<hd {
                            XCTAssertEqual(
                                Double(out[d]), want[d], accuracy: 2e-6 + 1e-5 * abs(want[d]),
                                "\(name) hd \(hd) n \(n) masked \(masked) d \(d)")
                        }
                    }
                }
            }
        }
    }

    func testAllKeysMaskedGivesZerosAndBadInputIsRefused() {
        let hd = 8, n = 5
        let q = [Float](repeating: 1, count: hd), kv = [Float](repeating: 1, count: hd * n)
        let mask = [UInt8](repeating: 0, count: n)
        var out = [Float](repeating: .nan, count: hd), scratch = [Float](repeating: 0, count: n)
        for (name, path) in Self.paths where qst_vec_supported(path) != 0 {
            XCTAssertEqual(
                qst_side_decode_attention(&out, q, kv, kv, Int64(n), Int64(n), Int64(hd), 1, mask, &scratch, path), 0)
            XCTAssertEqual(out, [Float](repeating: 0, count: hd), name)
            XCTAssertEqual(
                qst_side_decode_attention(&out, q, kv, kv, Int64(n), 0, Int64(hd), 1, nil, &scratch, path), -1,
                "\(name): no keys")
        }
    }
}
