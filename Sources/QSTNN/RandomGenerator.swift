import Foundation

/// SplitMix64 (Steele, Lea, Flood 2014): the whole state is one `UInt64`, so training can save it in a
/// checkpoint and resume bit-identically. Output `k` (counting from 1) is `mix(state₀ + k·γ)`, which lets
/// large draws be generated in parallel while staying identical to sequential `next()` calls.
public struct SplitMix64: RandomNumberGenerator, Sendable, Equatable, Codable {
    public static let gamma: UInt64 = 0x9E37_79B9_7F4A_7C15
    public var state: UInt64

    public init(seed: UInt64) { state = seed }

    @inline(__always) public static func mix(_ z0: UInt64) -> UInt64 {
        var z = z0
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    public mutating func next() -> UInt64 {
        state &+= SplitMix64.gamma
        return SplitMix64.mix(state)
    }

    /// The value `next()` would return after `k` further calls (k ≥ 1), without advancing.
    @inline(__always) public func peek(_ k: Int) -> UInt64 {
        SplitMix64.mix(state &+ UInt64(truncatingIfNeeded: k) &* SplitMix64.gamma)
    }

    /// Skips `k` outputs.
    public mutating func advance(by k: Int) { state &+= UInt64(truncatingIfNeeded: k) &* SplitMix64.gamma }

    /// Uniform in [0, 1) with 24 random bits (exact in F32).
    @inline(__always) public static func unitFloat(_ bits: UInt64) -> Float {
        Float(bits >> 40) * (1.0 / 16_777_216.0)
    }

    public mutating func nextFloat() -> Float { SplitMix64.unitFloat(next()) }

    /// Standard normal via Box–Muller (two uniform draws per value), for weight initialisation.
    public mutating func nextGaussian() -> Float {
        let u1 = max(Double(next() >> 11) * 0x1.0p-53, Double.leastNonzeroMagnitude)
        let u2 = Double(next() >> 11) * 0x1.0p-53
        return Float((-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * Double.pi * u2))
    }
}
