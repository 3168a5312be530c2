import Foundation
import QSTKernels
import XCTest

struct MatmulTestError: Error, CustomStringConvertible {
    let description: String
}

/// A random weight matrix in one of the three storage types, with its own decoding
/// (written from the NF4/bfloat16 specifications, not from the C code) for reference sums.
struct TestMatrix {
    enum Storage {
        case nf4(codes: [UInt8], absmax: [Float], block: Int)
        case bf16(bits: [UInt16], ld: Int)
        case f32(values: [Float], ld: Int)
    }

    /// bitsandbytes NF4 code values.
    static let nf4Table: [Double] = [
        -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
        -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
        0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
        0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
    ]

    let n: Int
    let k: Int
    let storage: Storage

    static func randomFloats(count: Int, seed: UInt64) -> [Float] {
        var rng = SplitMix(seed: seed)
        return (0..<count).map { _ in Float(rng.unit() * 2 - 1) }
    }

    static func nf4(n: Int, k: Int, block: Int, seed: UInt64) -> TestMatrix {
        var rng = SplitMix(seed: seed)
        let codes = (0..<(n * k / 2)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let absmax = (0..<(n * k / block)).map { _ in Float(0.01 + rng.unit()) }
        return TestMatrix(n: n, k: k, storage: .nf4(codes: codes, absmax: absmax, block: block))
    }

    static func bf16(n: Int, k: Int, ld: Int, seed: UInt64) -> TestMatrix {
        var rng = SplitMix(seed: seed)
        // Truncating float32 bits gives a valid bfloat16; padding columns hold garbage
        // (huge values) that must never reach a result.
        let bits = (0..<(n * ld)).map { i -> UInt16 in
            if i % ld >= k { return 0x7F00 }
            return UInt16(Float(rng.unit() * 2 - 1).bitPattern >> 16)
        }
        return TestMatrix(n: n, k: k, storage: .bf16(bits: bits, ld: ld))
    }

    static func f32(n: Int, k: Int, ld: Int, seed: UInt64) -> TestMatrix {
        var rng = SplitMix(seed: seed)
        let values = (0..<(n * ld)).map { i -> Float in i % ld >= k ? 1e30 : Float(rng.unit() * 2 - 1) }
        return TestMatrix(n: n, k: k, storage: .f32(values: values, ld: ld))
    }

    /// W[row, col] as Double.
    func value(_ row: Int, _ col: Int) -> Double {
        switch storage {
        case let .nf4(codes, absmax, block):
            let e = row * k + col
            let byte = codes[e / 2]
            let code = e % 2 == 0 ? Int(byte >> 4) : Int(byte & 0x0F)
            // The format stores Float(table * absmax); the reference uses the same float32 product.
            return Double(Float(Self.nf4Table[code]) * absmax[e / block])
        case let .bf16(bits, ld):
            return Double(Float(bitPattern: UInt32(bits[row * ld + col]) << 16))
        case let .f32(values, ld):
            return Double(values[row * ld + col])
        }
    }

    /// For each output (i, j): (sum_k x[i,k] W[j,k], sum_k |x[i,k] W[j,k]|) in Double.
    func reference(x: [Float], m: Int, ldx: Int) -> [(Double, Double)] {
        var out = [(Double, Double)](repeating: (0, 0), count: m * n)
        for j in 0..<n {
            let row = (0..<k).map { value(j, $0) }
            for i in 0..<m {
                var s = 0.0, a = 0.0
                for t in 0..<k {
                    let p = Double(x[i * ldx + t]) * row[t]
                    s += p
                    a += abs(p)
                }
                out[i * n + j] = (s, a)
            }
        }
        return out
    }

    /// For the AVX2_INT16 path (NF4 only): per output the documented error bound
    /// sum_e absmax_e * (|x_e| / (2 grid) + 1.01 * max|x| over e's aligned 64-element span / (2 levels)),
    /// `grid` the NF4 grid's scale and `levels` x's: the GEMV's int16 (16384, 32767) by default, the
    /// GEMM's (8191, 8191).
    func int8Bound(x: [Float], m: Int, ldx: Int, grid: Double = 16384, levels: Double = 32767) -> [Double] {
        guard case let .nf4(_, absmax, block) = storage else { return [Double](repeating: 0, count: m * n) }
        var out = [Double](repeating: 0, count: m * n)
        for i in 0..<m {
            let spanMax = (0..<((k + 63) / 64)).map { g in
                (g * 64..<min(k, g * 64 + 64)).map { Double(abs(x[i * ldx + $0])) }.max()!
            }
            for j in 0..<n {
                var b = 0.0
                for t in 0..<k {
                    b +=
                        Double(absmax[(j * k + t) / block])
                        * (Double(abs(x[i * ldx + t])) / (2 * grid) + 1.01 * spanMax[t / 64] / (2 * levels))
                }
                out[i * n + j] = b
            }
        }
        return out
    }

    func withWeight<R>(_ body: (qst_weight) throws -> R) throws -> R {
        switch storage {
        case let .nf4(codes, absmax, block):
            return try codes.withUnsafeBytes { c in
                try absmax.withUnsafeBufferPointer { a in
                    try body(
                        qst_weight(
                            type: QST_WEIGHT_NF4, block: Int32(block), n: Int64(n), k: Int64(k), ld: Int64(k),
                            data: c.baseAddress, absmax: a.baseAddress))
                }
            }
        case let .bf16(bits, ld):
            return try bits.withUnsafeBytes { b in
                try body(
                    qst_weight(
                        type: QST_WEIGHT_BF16, block: 0, n: Int64(n), k: Int64(k), ld: Int64(ld),
                        data: b.baseAddress, absmax: nil))
            }
        case let .f32(values, ld):
            return try values.withUnsafeBytes { v in
                try body(
                    qst_weight(
                        type: QST_WEIGHT_F32, block: 0, n: Int64(n), k: Int64(k), ld: Int64(ld),
                        data: v.baseAddress, absmax: nil))
            }
        }
    }

    /// Runs one matmul over columns [n0, n1) on top of `into` (or a zero buffer).
    func run(
        x: [Float], m: Int, ldx: Int, ldy: Int, n0: Int, n1: Int, kernel: qst_kernel, shape: qst_shape,
        into initial: [Float]? = nil
    ) throws -> [Float] {
        var y = initial ?? [Float](repeating: 0, count: m * ldy)
        let status = try withWeight { weight -> Int32 in
            var w = weight
            return qst_matmul_ex(x, Int64(m), Int64(ldx), &w, &y, Int64(ldy), Int64(n0), Int64(n1), kernel, shape)
        }
        guard status == 0 else {
            throw MatmulTestError(description: "qst_matmul_ex failed with \(status) (kernel \(kernel), shape \(shape))")
        }
        return y
    }
}

/// Deterministic generator so failures reproduce.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
}
