import Foundation

/// Independent reference for the 16-bit float formats, written from the IEEE 754
/// definitions in Double arithmetic (no bit tricks shared with the code under test).
enum FloatReference {
    struct Format {
        let mantissaBits: Int
        let exponentBits: Int
        var bias: Int { (1 << (exponentBits - 1)) - 1 }
        var minExponent: Int { 1 - bias }
        var maxExponent: Int { bias }
        var largestFinite: Double { (2 - pow(2, Double(-mantissaBits))) * pow(2, Double(maxExponent)) }
    }
    static let f16 = Format(mantissaBits: 10, exponentBits: 5)
    static let bf16 = Format(mantissaBits: 7, exponentBits: 8)

    /// The value a 16-bit pattern denotes; NaN for every NaN pattern.
    static func value(_ h: UInt16, _ f: Format) -> Double {
        let sign: Double = (h >> 15) == 1 ? -1 : 1
        let e = Int(h >> UInt16(f.mantissaBits)) & ((1 << f.exponentBits) - 1)
        let m = Double(Int(h) & ((1 << f.mantissaBits) - 1))
        let scale = pow(2, Double(f.mantissaBits))
        if e == (1 << f.exponentBits) - 1 { return m == 0 ? sign * .infinity : .nan }
        if e == 0 { return sign * (m / scale) * pow(2, Double(f.minExponent)) }
        return sign * (1 + m / scale) * pow(2, Double(e - f.bias))
    }

    static func isNaNPattern(_ h: UInt16, _ f: Format) -> Bool {
        let e = Int(h >> UInt16(f.mantissaBits)) & ((1 << f.exponentBits) - 1)
        return e == (1 << f.exponentBits) - 1 && (Int(h) & ((1 << f.mantissaBits) - 1)) != 0
    }

    /// x rounded to the format, to nearest with ties to even, with IEEE overflow to
    /// infinity (a result that would exceed the largest finite value after rounding
    /// with an unbounded exponent). The grid step is 2^(max(e, emin) - mantissaBits).
    static func rounded(_ x: Float, _ f: Format) -> Double {
        let v = Double(x)
        if v.isNaN || v.isInfinite || v == 0 { return v }
        let a = abs(v)
        let e = max(Int(a.exponent), f.minExponent)
        let step = pow(2, Double(e - f.mantissaBits))
        let r = (a / step).rounded(.toNearestOrEven) * step
        let mag = r > f.largestFinite ? Double.infinity : r
        return v < 0 ? -mag : mag
    }
}

/// Deterministic pseudo-random numbers (SplitMix64) so failures reproduce.
struct STRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
    mutating func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8(truncatingIfNeeded: next()) } }
}
