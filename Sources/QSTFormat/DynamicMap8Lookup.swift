import Foundation

/// An exact shortcut for `DynamicMap8.nearestIndex`, the search that double quantization runs once per
/// NF4 block. That search compares its input only with fixed thresholds: the 256 code values and the
/// midpoints it can reach at the end (two per leaf of its 7-step tree). Between two consecutive thresholds
/// every comparison has the same outcome, so the index is constant there. This table is keyed by the top
/// 16 bits of the float (sign, exponent, 7 mantissa bits): a key whose whole range of floats holds no
/// threshold stores the index; a key with a threshold inside (about one in four in [0.06, 1], where the
/// codes are dense), or with |x| ≥ 2, NaN or infinity, stores `ambiguous` and the search runs as before.
/// The result is the search's own for every input (`DynamicMap8LookupTests` checks it).
final class DynamicMap8Lookup: @unchecked Sendable {
    static let shared = DynamicMap8Lookup()
    static let keyShift: UInt32 = 16
    static let ambiguous: UInt16 = 256

    /// 65,536 entries, one per key; allocated once for the process, never freed, never written after init.
    let table: UnsafePointer<UInt16>

    private init() {
        let code = DynamicMap8.signedCode
        let thresholds = Self.thresholds(code)
        let keys = 1 << (32 - Int(Self.keyShift))
        let t = UnsafeMutablePointer<UInt16>.allocate(capacity: keys)
        // One search per gap between thresholds, not one per key.
        var gapIndex = [UInt16](repeating: Self.ambiguous, count: thresholds.count + 1)
        code.withUnsafeBufferPointer { c in
            for key in 0..<keys {
                let low = UInt32(key) << Self.keyShift, high = low | ((1 << Self.keyShift) - 1)
                let a = Float(bitPattern: low), b = Float(bitPattern: high)
                guard a.isFinite, b.isFinite, abs(a) < 2, abs(b) < 2 else { t[key] = Self.ambiguous; continue }
                let lo = min(a, b), hi = max(a, b)
                let g = Self.firstIndex(notBelow: lo, in: thresholds)  // thresholds[g-1] < lo ≤ thresholds[g]
                if g < thresholds.count && thresholds[g] <= hi { t[key] = Self.ambiguous; continue }
                if gapIndex[g] == Self.ambiguous {
                    gapIndex[g] = UInt16(DynamicMap8.nearestIndex(lo, code: c.baseAddress!))
                }
                t[key] = gapIndex[g]
            }
        }
        table = UnsafePointer(t)
    }

    /// The code index of `x`, equal to `DynamicMap8.nearestIndex(x, code: code)`.
    @inline(__always)
    static func index(_ x: Float, lookup: UnsafePointer<UInt16>, code: UnsafePointer<Float>) -> UInt8 {
        let e = lookup[Int(x.bitPattern >> keyShift)]
        return e != ambiguous ? UInt8(truncatingIfNeeded: e) : DynamicMap8.nearestIndex(x, code: code)
    }

    /// Every value the search compares its input with, sorted: the code values, and the two midpoints
    /// at each leaf of the pivot tree, computed exactly as the search computes them.
    static func thresholds(_ code: [Float]) -> [Float] {
        var out = code
        func walk(_ pivot: Int, _ upperPivot: Int, _ lowerPivot: Int, _ step: Int) {
            guard step > 0 else {
                out.append((code[upperPivot] + code[pivot]) * 0.5)
                out.append((code[lowerPivot] + code[pivot]) * 0.5)
                return
            }
            walk(pivot + step, upperPivot, pivot, step >> 1)  // x > code[pivot]
            walk(pivot - step, pivot, lowerPivot, step >> 1)  // otherwise
        }
        walk(127, 255, 0, 64)
        return Array(Set(out.map(\.bitPattern)).map { Float(bitPattern: $0) }).sorted()
    }

    /// The first index i with values[i] ≥ x (values sorted), or values.count.
    static func firstIndex(notBelow x: Float, in values: [Float]) -> Int {
        var lo = 0, hi = values.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if values[mid] < x { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }
}
