/// `exp` over arrays, 16 lanes at a time: Cody–Waite range reduction `x = n·ln2 + r` and a degree-7
/// Taylor polynomial on |r| ≤ ln2/2 (relative error below 2e-7, like libm's expf), `2ⁿ` by exponent bits.
/// Inputs below −87.3 give exp(−87.3) ≈ 1.2e-38; inputs must not exceed 88.
public enum FastExp {
    typealias V = SIMD16<Float>

    @inline(__always) static func exp(_ x0: V) -> V {
        // Lower clamp by sign-bit select in integer lanes (pointwiseMax is scalarised on baseline x86-64).
        // Callers pass x ≤ 88 (softmax passes x ≤ 0), so no upper clamp is needed.
        typealias U = SIMD16<UInt32>
        let lo = V(repeating: -87.3)
        let below = U(repeating: 0) &- (unsafeBitCast(x0 - lo, to: U.self) &>> U(repeating: 31))
        let x = unsafeBitCast((unsafeBitCast(lo, to: U.self) & below) | (unsafeBitCast(x0, to: U.self) & ~below), to: V.self)
        // Round x·log2(e) to the nearest integer by adding 1.5·2²³ (float addition rounds; the integer
        // lands in the low mantissa bits), avoiding per-lane float→int conversion calls.
        let magic = V(repeating: 12582912)
        let t = x * V(repeating: 1.44269504088896341) + magic
        let n = t - magic
        // ln2 split into a high part exact in float and a low correction.
        var r = x - n * V(repeating: 0.693359375)
        r = r - n * V(repeating: -2.12194440e-4)
        var p = V(repeating: 1.0 / 5040)
        p = p * r + V(repeating: 1.0 / 720)
        p = p * r + V(repeating: 1.0 / 120)
        p = p * r + V(repeating: 1.0 / 24)
        p = p * r + V(repeating: 1.0 / 6)
        p = p * r + V(repeating: 0.5)
        p = p * r + V(repeating: 1)
        p = p * r + V(repeating: 1)
        let tb = unsafeBitCast(t, to: SIMD16<UInt32>.self), mb = unsafeBitCast(magic, to: SIMD16<UInt32>.self)
        let bits = (tb &- mb &+ SIMD16<UInt32>(repeating: 127)) &<< SIMD16<UInt32>(repeating: 23)
        return p * unsafeBitCast(bits, to: V.self)
    }

    /// `row[j] = exp(row[j] − shift)` for `j < count`; returns the sum (accumulated in Double per block).
    public static func expShiftedInPlace(_ row: UnsafeMutablePointer<Float>, count: Int, shift: Float) -> Float {
        var j = 0
        var acc = V(repeating: 0)
        let raw = UnsafeMutableRawPointer(row)
        let sv = V(repeating: shift)
        while j + 16 <= count {
            let e = exp(raw.loadUnaligned(fromByteOffset: 4 * j, as: V.self) - sv)
            raw.storeBytes(of: e, toByteOffset: 4 * j, as: V.self)
            acc += e
            j += 16
        }
        var sum = Double(acc.sum())
        if j < count {
            // The tail goes through a 16-lane stack copy with bulk copies (per-lane SIMD subscripts spill).
            let m = count - j
            var tail = V(repeating: shift - 80)
            withUnsafeMutableBytes(of: &tail) { $0.baseAddress!.copyMemory(from: row + j, byteCount: 4 * m) }
            var e = exp(tail - sv)
            withUnsafeBytes(of: &e) { (row + j).update(from: $0.baseAddress!.assumingMemoryBound(to: Float.self), count: m) }
            for t in 0..<m { sum += Double(row[j + t]) }
        }
        return Float(sum)
    }
}
