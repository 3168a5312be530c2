import QSTCore
/// bitsandbytes' signed dynamic 8-bit map and its blockwise quantizer, used by NF4 double
/// quantization (QLoRA's "DQ") to store the per-block absmax values in 8 bits.
public enum DynamicMap8 {
    /// `create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)`: 256 ascending values
    /// in [-0.99296875, 1], built in float32 step by step as bitsandbytes does with torch, so the
    /// table equals bitsandbytes 0.50.2's bit for bit (checked against its golden dump). For decade
    /// i (0...6): torch.linspace(0.1, 1, 2^i+1) in float32, float32 midpoints, times float32(10^(i-6)).
    public static let signedCode: [Float] = {
        var data: [Float] = []
        for i in 0..<7 {
            let bounds = torchLinspace(0.1, 1, steps: (1 << i) + 1)
            let scale = Float(pow10(i - 6))  // torch casts the Python scalar to the tensor's float32
            for k in 0..<(bounds.count - 1) {
                let m = (bounds[k] + bounds[k + 1]) / 2
                data.append(scale * m)
                data.append(-scale * m)
            }
        }
        data.append(0)
        data.append(1)
        return data.sorted()
    }()

    /// torch.linspace(start, end, steps) for float32 on CPU: step = (end - start) / (steps - 1) in
    /// float32; the first half is start + step*k, the second end - step*(steps-1-k), each a fused
    /// multiply-add (torch's kernel is compiled with contraction on FMA machines; the golden map
    /// shows it).
    static func torchLinspace(_ start: Float, _ end: Float, steps: Int) -> [Float] {
        let step = (end - start) / Float(steps - 1)
        let half = steps / 2
        return (0..<steps).map { k in
            k < half ? start.addingProduct(step, Float(k)) : end.addingProduct(-step, Float(steps - 1 - k))
        }
    }

    /// 10^e for e in -6...0 as Python evaluates `10 ** e` (the correctly rounded double).
    private static func pow10(_ e: Int) -> Double {
        e >= 0 ? 1 : 1.0 / [1e1, 1e2, 1e3, 1e4, 1e5, 1e6][-e - 1]
    }

    /// bitsandbytes' `dQuantize<0>` over a sorted 256-entry code: a 7-step pivot search from 127,
    /// then the midpoint rule with strict comparisons (ties stay on the pivot). Written with integer
    /// selects instead of branches (the same steps and comparisons, so the same index for every
    /// input, NaN included): the search direction is data-dependent, and mispredicted branches made
    /// this step as slow as the NF4 quantization itself. The bounds `lower`/`upper` of bitsandbytes'
    /// loop are always `code[lowerPivot]`/`code[upperPivot]` after its fix-up of the never-moved ends
    /// (index 0 and 255), so they are loaded once at the end.
    @inline(__always)
    static func nearestIndex(_ x: Float, code: UnsafePointer<Float>) -> UInt8 {
        var pivot = 127, upperPivot = 255, lowerPivot = 0
        var val = code[pivot]
        var i = 64
        while i > 0 {
            let above = x > val
            lowerPivot = above ? pivot : lowerPivot
            upperPivot = above ? upperPivot : pivot
            pivot = above ? pivot + i : pivot - i
            val = code[pivot]
            i >>= 1
        }
        let upperMidpoint = (code[upperPivot] + val) * 0.5, lowerMidpoint = (code[lowerPivot] + val) * 0.5
        let up = x > upperMidpoint ? upperPivot : pivot
        let down = x < lowerMidpoint ? lowerPivot : pivot
        return UInt8(truncatingIfNeeded: x > val ? up : down)
    }

    /// `quantize_blockwise(values, code=signedCode, blocksize)`: per block the float32 absmax,
    /// each value times float32(1/absmax) mapped to its nearest code. Values must be finite.
    /// An all-zero block (absmax 0) maps 0*inf = NaN to index 0, as the CUDA kernel does.
    /// `threads` caps the cores used (the result does not depend on it).
    public static func quantizeBlockwise(
        _ values: [Float], blockSize: Int,
        threads: Int = Parallel.defaultThreads
    ) -> (codes: [UInt8], absmax: [Float]) {
        let n = values.count
        let blocks = (n + blockSize - 1) / blockSize
        var codes = [UInt8](repeating: 0, count: n)
        var absmax = [Float](repeating: 0, count: blocks)
        // Blocks are independent: split them over the cores (the result does not depend on the split).
        signedCode.withUnsafeBufferPointer { code in
            values.withUnsafeBufferPointer { v in
                codes.withUnsafeMutableBufferPointer { c in
                    absmax.withUnsafeMutableBufferPointer { a in
                        let sv = SendableConstPointer(v.baseAddress!), sc = SendablePointer(c.baseAddress!)
                        let sa = SendablePointer(a.baseAddress!), table = SendableConstPointer(code.baseAddress!)
                        let lookup = SendableConstPointer(DynamicMap8Lookup.shared.table)
                        Parallel.forRanges(blocks, threads: threads, minChunk: 256) { b0, b1 in
                            for b in b0..<b1 {
                                let lo = b * blockSize, hi = min(n, lo + blockSize)
                                var m: Float = 0
                                for i in lo..<hi { m = max(m, abs(sv[i])) }
                                sa[b] = m
                                let recip: Float = 1 / m
                                for i in lo..<hi {
                                    sc[i] = DynamicMap8Lookup.index(
                                        sv[i] * recip, lookup: lookup.base,
                                        code: table.base)
                                }
                            }
                        }
                    }
                }
            }
        }
        return (codes, absmax)
    }

    /// `dequantize_blockwise`: code[q] * absmax of the value's block (one float32 multiply).
    public static func dequantizeBlockwise(codes: [UInt8], absmax: [Float], blockSize: Int) -> [Float] {
        let code = signedCode
        return codes.indices.map { code[Int(codes[$0])] * absmax[$0 / blockSize] }
    }
}
