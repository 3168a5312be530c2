import QSTCore

/// Exact conversions between F32 and the 16-bit float encodings.
///
/// Widening (F16/BF16 → F32) is exact. Narrowing rounds to nearest, ties to even;
/// values beyond the target's range become ±infinity, NaN stays NaN (quiet, sign
/// and top payload bits kept). Everything is done on bit patterns so the result
/// does not depend on the CPU having F16C or AVX-512 BF16, and the bulk loops are
/// written branch-free so the compiler vectorizes them.
public enum FloatConversion {
    /// Buffers at least this long are split over the cores; below it a thread
    /// hand-off costs more than the conversion.
    public static let parallelThreshold = 1 << 18

    // MARK: Scalars

    @inlinable
    public static func bf16ToF32(_ h: UInt16) -> Float {
        Float(bitPattern: UInt32(h) << 16)
    }

    @inlinable
    public static func f16ToF32(_ h: UInt16) -> Float {
        Float(bitPattern: f16BitsToF32Bits(UInt32(h)))
    }

    @inlinable
    public static func f32ToBF16(_ x: Float) -> UInt16 {
        UInt16(truncatingIfNeeded: f32BitsToBF16Bits(x.bitPattern))
    }

    @inlinable
    public static func f32ToF16(_ x: Float) -> UInt16 {
        UInt16(truncatingIfNeeded: f32BitsToF16Bits(x.bitPattern))
    }

    // MARK: Bit-level kernels (shared by scalar and bulk paths)

    @inlinable @inline(__always)
    static func f16BitsToF32Bits(_ h: UInt32) -> UInt32 {
        let sign = (h & 0x8000) << 16
        let shifted = (h & 0x7fff) << 13
        // Rebias the exponent from 15 to 127.
        let normal = shifted &+ 0x3800_0000
        // Exponent all ones: keep it all ones in F32, mantissa carries over (inf or NaN).
        let special = shifted | 0x7f80_0000
        // Subnormal or zero: treat the bits as 2^-14 * (1 + m/1024) and subtract 2^-14,
        // which leaves exactly m * 2^-24 (the subtraction is exact).
        let subnormal = (Float(bitPattern: normal &+ 0x0080_0000) - Float(bitPattern: 0x3880_0000)).bitPattern
        let exp = h & 0x7c00
        let magnitude = exp == 0x7c00 ? special : (exp == 0 ? subnormal : normal)
        return sign | magnitude
    }

    @inlinable @inline(__always)
    static func f32BitsToBF16Bits(_ b: UInt32) -> UInt32 {
        let isNaN = (b & 0x7fff_ffff) > 0x7f80_0000
        // Adding 0x7fff plus the lowest kept bit rounds half to even; a carry into
        // the exponent is the correct result, including rounding up to infinity.
        let rounded = (b &+ 0x7fff &+ ((b >> 16) & 1)) >> 16
        return isNaN ? ((b >> 16) | 0x0040) : rounded
    }

    @inlinable @inline(__always)
    static func f32BitsToF16Bits(_ b: UInt32) -> UInt32 {
        let sign = (b >> 16) & 0x8000
        let f = b & 0x7fff_ffff
        // |x| >= 65536 (2^16): infinity, or NaN kept quiet with the top payload bits.
        let special: UInt32 = f > 0x7f80_0000 ? (0x7e00 | ((f >> 13) & 0x03ff)) : 0x7c00
        // |x| < 2^-14: the F16 result is subnormal. Adding 0.5 puts the F16 subnormal
        // grid (step 2^-24) onto F32's grid at 0.5, so the FPU's own round-to-nearest-even
        // does the rounding; the low bits are then the F16 pattern.
        let small = (Float(bitPattern: f) + 0.5).bitPattern &- 0x3f00_0000
        // Normal range: rebias 127 → 15 and round half to even on the 13 dropped bits;
        // a carry out of the mantissa bumps the exponent, up to 0x7c00 (infinity).
        let normal = (f &+ 0xc800_0fff &+ ((f >> 13) & 1)) >> 13
        let magnitude = f >= 0x4780_0000 ? special : (f < 0x3880_0000 ? small : normal)
        return sign | magnitude
    }

    // MARK: Bulk

    public static func bf16ToF32(_ src: UnsafePointer<UInt16>, _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
        forChunks(src, dst, n) { s, d, count in
            for i in 0..<count { d[i] = Float(bitPattern: UInt32(s[i]) << 16) }
        }
    }

    public static func f16ToF32(_ src: UnsafePointer<UInt16>, _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
        forChunks(src, dst, n) { s, d, count in
            for i in 0..<count { d[i] = Float(bitPattern: f16BitsToF32Bits(UInt32(s[i]))) }
        }
    }

    public static func f32ToBF16(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<UInt16>, _ n: Int) {
        forChunks(src, dst, n) { s, d, count in
            for i in 0..<count { d[i] = UInt16(truncatingIfNeeded: f32BitsToBF16Bits(s[i].bitPattern)) }
        }
    }

    public static func f32ToF16(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<UInt16>, _ n: Int) {
        forChunks(src, dst, n) { s, d, count in
            for i in 0..<count { d[i] = UInt16(truncatingIfNeeded: f32BitsToF16Bits(s[i].bitPattern)) }
        }
    }

    /// Array conveniences for small data (tests, exports).
    public static func toF32(_ bits: [UInt16], from dtype: DType) -> [Float] {
        var out = [Float](repeating: 0, count: bits.count)
        bits.withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { d in
                guard let sp = s.baseAddress, let dp = d.baseAddress else { return }
                if dtype == .bf16 { bf16ToF32(sp, dp, s.count) } else { f16ToF32(sp, dp, s.count) }
            }
        }
        return out
    }

    public static func fromF32(_ values: [Float], to dtype: DType) -> [UInt16] {
        var out = [UInt16](repeating: 0, count: values.count)
        values.withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { d in
                guard let sp = s.baseAddress, let dp = d.baseAddress else { return }
                if dtype == .bf16 { f32ToBF16(sp, dp, s.count) } else { f32ToF16(sp, dp, s.count) }
            }
        }
        return out
    }

    /// Runs `body` over disjoint sub-ranges, on several cores for large buffers.
    /// The ranges are disjoint, so no two threads touch the same element, which is
    /// what makes the unchecked-Sendable wrappers sound.
    @inline(__always)
    static func forChunks<S, D>(
        _ src: UnsafePointer<S>, _ dst: UnsafeMutablePointer<D>, _ n: Int,
        _ body: (UnsafePointer<S>, UnsafeMutablePointer<D>, Int) -> Void
    ) {
        guard n > 0 else { return }
        if n < parallelThreshold { body(src, dst, n); return }
        let s = SendableConstPointer(src), d = SendablePointer(dst)
        withoutActuallyEscaping(body) { body in
            let box = UncheckedSendable(body)
            Parallel.forRanges(n, minChunk: parallelThreshold / 2) { start, end in
                box.value(s.base + start, d.base + start, end - start)
            }
        }
    }
}

/// Carries a value into a Sendable closure when the caller guarantees the uses are
/// race-free (here: disjoint index ranges).
private struct UncheckedSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
