/// torch's CPU float32 `mean()` of a contiguous vector, reproduced operation by operation: the
/// double-quantization offset of bitsandbytes is `absmax.mean()`, so matching its bytes means
/// matching torch's summation order, not just its value.
///
/// The sum is aten's `cascade_sum` (native/cpu/SumKernel.cpp) on one thread with 8 float32 lanes
/// (the AVX2 and NEON vector width): vectors are taken four at a time into four accumulator rows;
/// every 16 groups (2^max(4, ceil(log2 groups)/4) in general) a row's level-0 sums move up a
/// cascade of four levels; then the levels fold into level 0, leftover vectors go into row 0,
/// rows 1-3 into row 0; finally a scalar starts at 0, adds the elements past the last whole
/// vector, then the 8 lanes in order. The mean is that sum divided once by the count (float32).
/// Torch runs one thread below 32,768 values; above it splits the sum over its threads, so
/// there the result depends on torch's thread count (Formats/NF4.md §4 gives the size).
enum TorchMean {
    static let lanes = 8
    static let rows = 4
    static let levels = 4

    static func mean(_ v: [Float]) -> Float {
        guard !v.isEmpty else { return 0 }
        return sum(v) / Float(v.count)
    }

    static func sum(_ x: [Float]) -> Float {
        let n = x.count, vectors = n / lanes, groups = vectors / rows
        let power = max(4, ceilLog2(groups) / levels)
        let step = 1 << power, mask = step - 1
        // acc[level][row][lane]
        var acc = [Float](repeating: 0, count: levels * rows * lanes)
        @inline(__always) func at(_ level: Int, _ row: Int, _ lane: Int) -> Int { (level * rows + row) * lanes + lane }
        func addGroup(_ g: Int) {
            for r in 0..<rows {
                let base = (g * rows + r) * lanes
                for l in 0..<lanes { acc[at(0, r, l)] += x[base + l] }
            }
        }
        var g = 0
        while g + step <= groups {
            for _ in 0..<step { addGroup(g); g += 1 }
            for j in 1..<levels {
                for r in 0..<rows {
                    for l in 0..<lanes { acc[at(j, r, l)] += acc[at(j - 1, r, l)]; acc[at(j - 1, r, l)] = 0 }
                }
                if g & (mask << (j * power)) != 0 { break }
            }
        }
        while g < groups { addGroup(g); g += 1 }
        for j in 1..<levels {
            for r in 0..<rows { for l in 0..<lanes { acc[at(0, r, l)] += acc[at(j, r, l)] } }
        }
        for v in (groups * rows)..<vectors {
            for l in 0..<lanes { acc[at(0, 0, l)] += x[v * lanes + l] }
        }
        for r in 1..<rows { for l in 0..<lanes { acc[at(0, 0, l)] += acc[at(0, r, l)] } }
        var total: Float = 0
        for k in (vectors * lanes)..<n { total += x[k] }
        for l in 0..<lanes { total += acc[at(0, 0, l)] }
        return total
    }

    /// Smallest p with 2^p >= x (0 for x <= 1), as c10's CeilLog2.
    static func ceilLog2(_ x: Int) -> Int {
        x <= 1 ? 0 : Int.bitWidth - (x - 1).leadingZeroBitCount
    }
}
