import Foundation
import XCTest
@testable import QSTNN

final class AttentionTests: XCTestCase {
    /// Naive O(T²) causal GQA attention in Double. Rows with no admissible key produce zeros.
    static func refAttention(
        q: [Double], k: [Double], v: [Double], mask: [UInt8]?, B: Int, T: Int,
        nH: Int, nKV: Int, hd: Int
    ) -> [Double] {
        var out = [Double](repeating: 0, count: B * T * nH * hd)
        let scale = 1 / Double(hd).squareRoot()
        for b in 0..<B {
            for h in 0..<nH {
                let g = h / (nH / nKV)
                for i in 0..<T {
                    let keys = (0...i).filter { mask == nil || mask![b * T + $0] != 0 }
                    if keys.isEmpty { continue }
                    let scores = keys.map { j in
                        (0..<hd).reduce(0.0) {
                            $0 + q[(b * T + i) * nH * hd + h * hd + $1] * k[(b * T + j) * nKV * hd + g * hd + $1]
                        } * scale
                    }
                    let m = scores.max()!
                    let e = scores.map { exp($0 - m) }
                    let z = e.reduce(0, +)
                    for (idx, j) in keys.enumerated() {
                        for c in 0..<hd {
                            out[(b * T + i) * nH * hd + h * hd + c] +=
                                e[idx] / z * v[(b * T + j) * nKV * hd + g * hd + c]
                        }
                    }
                }
            }
        }
        return out
    }

    func checkForwardBackward(B: Int, T: Int, nH: Int, nKV: Int, hd: Int, mask: [UInt8]?, seed: UInt64) {
        let k = Keep(); defer { withExtendedLifetime(k) {} }
        let shape = Attention.Shape(batch: B, seqLen: T, nHeads: nH, nKVHeads: nKV, headDim: hd)
        var rng = TestRandom(seed)
        let nq = B * T * nH * hd, nk = B * T * nKV * hd
        let q = rng.values(nq, scale: 1.5), kk = rng.values(nk, scale: 1.5), v = rng.values(nk), r = rng.values(nq)
        let qb = k.f(q), kb = k.f(kk), vb = k.f(v), out = k.zeros(nq), probs = k.zeros(shape.probsCount)
        let mb = mask.map { k.bytes($0) }
        Attention.forward(out: out, probs: probs, q: qb, k: kb, v: vb, keyMask: mb, shape: shape)
        let ref = Self.refAttention(q: q, k: kk, v: v, mask: mask, B: B, T: T, nH: nH, nKV: nKV, hd: hd)
        assertClose(read(out, nq), ref, rtol: 1e-5, atol: 1e-5, "forward")
        let noGrad = k.zeros(nq)
        Attention.forwardInference(out: noGrad, q: qb, k: kb, v: vb, keyMask: mb, shape: shape)
        assertClose(read(noGrad, nq), ref, rtol: 1e-5, atol: 1e-5, "forwardInference")
        // Each probability row sums to 1 (or is all zero for a query without keys) and is causal.
        for row in 0..<(B * nH * T) {
            let i = row % T
            let p = read(probs + row * T, T)
            XCTAssertTrue(p[(i + 1)...].allSatisfy { $0 == 0 }, "causal row \(row)")
            let s = p.reduce(0, +)
            XCTAssertTrue(abs(s - 1) < 1e-5 || s == 0, "row \(row) sums to \(s)")
        }
        let dq = k.zeros(nq), dk = k.zeros(nk), dv = k.zeros(nk)
        Attention.backward(dq: dq, dk: dk, dv: dv, dout: k.f(r), q: qb, k: kb, v: vb, probs: probs, shape: shape)
        func loss(_ q: [Double], _ kk: [Double], _ v: [Double]) -> Double {
            weightedSum(Self.refAttention(q: q, k: kk, v: v, mask: mask, B: B, T: T, nH: nH, nKV: nKV, hd: hd), r)
        }
        assertClose(read(dq, nq), finiteDifference(q) { loss($0, kk, v) }, rtol: 1e-3, atol: 1e-4, "dq")
        assertClose(read(dk, nk), finiteDifference(kk) { loss(q, $0, v) }, rtol: 1e-3, atol: 1e-4, "dk")
        assertClose(read(dv, nk), finiteDifference(v) { loss(q, kk, $0) }, rtol: 1e-3, atol: 1e-4, "dv")
    }

    func testMultiHeadNoMask() {
        checkForwardBackward(B: 1, T: 5, nH: 2, nKV: 2, hd: 4, mask: nil, seed: 10)
    }

    func testGroupedQueryWithPaddingMask() {
        // Sequence 0 is left-padded (its first query sees no key), sequence 1 is right-padded to length 3.
        let mask: [UInt8] = [0, 1, 1, 1, 1] + Attention.maskFromLengths([3], seqLen: 5)
        checkForwardBackward(B: 2, T: 5, nH: 4, nKV: 2, hd: 3, mask: mask, seed: 11)
    }

    func testMultiQueryAttention() {
        checkForwardBackward(B: 2, T: 3, nH: 3, nKV: 1, hd: 2, mask: nil, seed: 12)
    }

    func testCachedAttentionMatchesFullSequenceForPrefillAndDecode() {
        let k = Keep(); defer { withExtendedLifetime(k) {} }
        let B = 2, T = 6, nH = 4, nKV = 2, hd = 4, capacity = 9
        let shape = Attention.Shape(batch: B, seqLen: T, nHeads: nH, nKVHeads: nKV, headDim: hd)
        var rng = TestRandom(13)
        let q = rng.values(B * T * nH * hd), kk = rng.values(B * T * nKV * hd), v = rng.values(B * T * nKV * hd)
        let mask: [UInt8] = [0, 0, 1, 1, 1, 1] + [1, 1, 1, 1, 1, 1]
        let full = k.zeros(B * T * nH * hd)
        Attention.forward(
            out: full, probs: k.zeros(shape.probsCount), q: k.f(q), k: k.f(kk), v: k.f(v),
            keyMask: k.bytes(mask), shape: shape)
        // Cache [B, capacity, nKV·hd] holding the same keys/values; mask padded to capacity.
        let row = nKV * hd
        var kc = [Double](repeating: 0, count: B * capacity * row), vc = kc
        var mc = [UInt8](repeating: 0, count: B * capacity)
        for b in 0..<B {
            for t in 0..<T {
                for c in 0..<row {
                    kc[(b * capacity + t) * row + c] = kk[(b * T + t) * row + c]
                    vc[(b * capacity + t) * row + c] = v[(b * T + t) * row + c]
                }
                mc[b * capacity + t] = mask[b * T + t]
            }
        }
        let kcb = k.f(kc), vcb = k.f(vc), mcb = k.bytes(mc)
        let qw = nH * hd
        // Prefill 4 tokens then decode one at a time.
        var past = 0
        for step in [4, 1, 1] {
            var qs: [Double] = []
            for b in 0..<B { qs += q[((b * T + past) * qw)..<((b * T + past + step) * qw)] }
            let out = k.zeros(B * step * qw)
            Attention.forwardCached(
                out: out, q: k.f(qs), kCache: kcb, vCache: vcb, keyMask: mcb, batch: B,
                newTokens: step, pastLength: past, capacity: capacity,
                nHeads: nH, nKVHeads: nKV, headDim: hd)
            for b in 0..<B {
                assertClose(
                    read(out + b * step * qw, step * qw), read(full + (b * T + past) * qw, step * qw),
                    rtol: 1e-5, atol: 1e-6, "cached b\(b) past \(past)")
            }
            past += step
        }
    }
}
