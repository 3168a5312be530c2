import Foundation
import QSTCore
import QSTKernels

/// How the NF4 scale search looks for each block's scale (Formats/NF4.md §6).
public struct NF4SearchSettings: Sendable, Equatable {
    /// Candidate scales are `absmax · f` for `f` in `gridLow…gridHigh` in `gridSteps` equal steps (ends included).
    public var gridLow: Float = 0.80
    public var gridHigh: Float = 1.10
    public var gridSteps: Int = 15
    /// Assign/refit rounds after the grid: codes by nearest value, then the closed-form best scale for them.
    public var refinements: Int = 2

    public init() {}

    /// The grid multipliers, computed as float32 `low + i·(high-low)/steps` (the NumPy reference does the same).
    public var multipliers: [Float] {
        guard gridSteps > 0 else { return [gridLow] }
        let step = (gridHigh - gridLow) / Float(gridSteps)
        return (0...gridSteps).map { gridLow + Float($0) * step }
    }
}

/// NF4 with searched block scales: for each block the scale that minimises the (importance-weighted) squared
/// error `Σ wᵢ (xᵢ − NF4[cᵢ]·s)²` instead of the absmax, with codes by nearest value. The result is an ordinary
/// NF4 tensor (the decoder reads `NF4[c]·scale` whatever the scale), so any NF4 reader decodes it unchanged.
///
/// Per block: the absmax (bitsandbytes' choice, same codes bit for bit) is the first candidate, so the chosen
/// scale never does worse; then the grid; then `refinements` rounds of assign/refit. With double quantization
/// the chosen scales are double-quantized as usual and each block then picks, among the 8-bit codes near its own
/// and the code nearest its absmax, the one whose *decoded* scale gives the least error (codes re-assigned for
/// it), so the error is judged after the rounding the file really stores.
public enum NF4ScaleSearch {
    /// bitsandbytes' decision-tree midpoints (float32 of its decimal literals, NF4.md §2).
    static let midpoints: [Float] = [
        -0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544,
        -0.23460740596055984, -0.13791173323988914, -0.045525018125772476, 0.03979014977812767,
        0.1202552504837513, 0.2035212516784668, 0.2920137718319893, 0.3893125355243683,
        0.5016634166240692, 0.6427869200706482, 0.8614784181118011,
    ]

    /// `importance`: one weight per input channel (`rowLength` of them; element `k` uses `importance[k % rowLength]`),
    /// or nil for plain (unweighted) MSE. Values must be finite; importance must be finite and ≥ 0.
    public static func quantize(
        _ x: UnsafeBufferPointer<Float>, parameters: NF4Parameters, importance: [Float]?,
        rowLength: Int, settings: NF4SearchSettings = NF4SearchSettings(),
        file: String, tensor: String
    ) throws -> NF4Tensor {
        // The plain quantizer checks the parameters and the values (NaN/inf named by element) and gives the absmax.
        let plain = try NF4.quantize(
            x,
            parameters: NF4Parameters(
                blockSize: parameters.blockSize, doubleQuant: false,
                dqBlockSize: parameters.dqBlockSize),
            file: file, tensor: tensor)
        let count = x.count, bs = parameters.blockSize, blocks = plain.blocks
        guard rowLength > 0 else { throw QSTError.tensor(file, tensor, "scale search: row length \(rowLength)") }
        if let imp = importance {
            guard imp.count == rowLength else {
                throw QSTError.tensor(file, tensor, "importance has \(imp.count) channels, the rows have \(rowLength)")
            }
            if let bad = imp.firstIndex(where: { !$0.isFinite || $0 < 0 }) {
                throw QSTError.tensor(
                    file, tensor, "importance of channel \(bad) is \(imp[bad]); needs finite values ≥ 0")
            }
        }
        var codes = plain.codes
        guard count > 0 else { return plain }
        let weights = importance ?? []
        let workers = NF4.workerCount(count, threads: 0, threshold: NF4.quantizeParallelThreshold)
        let scales = searchedScales(
            x, absmax: plain.absmax, blockSize: bs, importance: importance, rowLength: rowLength,
            settings: settings, workers: workers)
        guard parameters.doubleQuant else {
            writeCodes(x, scales: scales, blockSize: bs, into: &codes)
            return NF4Tensor(
                count: count, blockSize: bs, codes: codes, absmax: scales, dqBlockSize: parameters.dqBlockSize)
        }
        // Double quantization of the chosen scales, then each block's 8-bit code chosen by the decoded scale's error.
        let (offset, second) = doubleQuantGrid(scales, dqBlockSize: parameters.dqBlockSize)
        var dq = second.codes
        let absmax2Values = second.absmax
        let absmaxValues = plain.absmax
        var decoded = [Float](repeating: 0, count: blocks)
        dq.withUnsafeMutableBufferPointer { q in
            decoded.withUnsafeMutableBufferPointer { d in
                let qs = SendablePointer(q.baseAddress!), ds = SendablePointer(d.baseAddress!)
                let xs = SendableConstPointer(x.baseAddress!)
                Parallel.forRanges(blocks, threads: workers, minChunk: 64) { b0, b1 in
                    var block = Block(capacity: bs)
                    defer { block.release() }
                    DynamicMap8.signedCode.withUnsafeBufferPointer { map in
                        weights.withUnsafeBufferPointer { wb in
                            for b in b0..<b1 {
                                block.load(
                                    xs.base, count: count, block: b, blockSize: bs,
                                    weights: importance != nil ? wb.baseAddress : nil, rowLength: rowLength)
                                let a2 = absmax2Values[b / parameters.dqBlockSize]
                                let pick = block.bestDoubleQuantCode(
                                    current: qs[b], absmax: absmaxValues[b],
                                    absmax2: a2, offset: offset, map: map.baseAddress!)
                                qs[b] = pick
                                ds[b] = map[Int(pick)] * a2 + offset
                            }
                        }
                    }
                }
            }
        }
        writeCodes(x, scales: decoded, blockSize: bs, into: &codes)
        return NF4Tensor(
            count: count, blockSize: bs, codes: codes, absmax: [], absmaxCodes: dq, absmax2: absmax2Values,
            absmaxOffset: offset, dqBlockSize: parameters.dqBlockSize)
    }

    /// Every block's searched float scale (steps 1–3 of NF4.md §6), before any double quantization.
    static func searchedScales(
        _ x: UnsafeBufferPointer<Float>, absmax: [Float], blockSize bs: Int, importance: [Float]?,
        rowLength: Int, settings: NF4SearchSettings, workers: Int
    ) -> [Float] {
        var scales = absmax
        let grid = settings.multipliers, count = x.count
        let weights = importance ?? []
        scales.withUnsafeMutableBufferPointer { sc in
            weights.withUnsafeBufferPointer { wb in
                let s = SendablePointer(sc.baseAddress!), xs = SendableConstPointer(x.baseAddress!)
                let w = SendableConstPointer(wb.baseAddress ?? UnsafePointer(bitPattern: 8)!)
                let weighted = importance != nil
                Parallel.forRanges(absmax.count, threads: workers, minChunk: 64) { b0, b1 in
                    var block = Block(capacity: bs)
                    defer { block.release() }
                    for b in b0..<b1 {
                        block.load(
                            xs.base, count: count, block: b, blockSize: bs,
                            weights: weighted ? w.base : nil, rowLength: rowLength)
                        s[b] = block.bestScale(absmax: s[b], grid: grid, refinements: settings.refinements)
                    }
                }
            }
        }
        return scales
    }

    /// The second level of double quantization for `scales`: their mean as offset and the dynamic 8-bit codes
    /// with one absmax2 per `dqBlockSize` (NF4.md §4).
    static func doubleQuantGrid(_ scales: [Float], dqBlockSize: Int) -> (
        offset: Float, second: (codes: [UInt8], absmax: [Float])
    ) {
        let offset = NF4.mean(scales)
        let second = DynamicMap8.quantizeBlockwise(scales.map { $0 - offset }, blockSize: dqBlockSize)
        return (offset, (second.codes, second.absmax))
    }

    /// Codes by nearest value for the given per-block scales (`v = x · f32(1/scale)`, bitsandbytes' tree).
    static func writeCodes(_ x: UnsafeBufferPointer<Float>, scales: [Float], blockSize: Int, into codes: inout [UInt8])
    {
        midpoints.withUnsafeBufferPointer { mid in
            for k in 0..<x.count {
                let r: Float = 1 / scales[k / blockSize]
                let c = UInt8(code(x[k] * r, mid.baseAddress!))
                if k & 1 == 0 {
                    codes[k >> 1] = (codes[k >> 1] & 0x0F) | (c << 4)
                } else {
                    codes[k >> 1] = (codes[k >> 1] & 0xF0) | c
                }
            }
        }
    }

    /// Number of midpoints strictly below `v` (NaN → 0), as bitsandbytes' `dQuantizeNF4`.
    @inline(__always)
    static func code(_ v: Float, _ mid: UnsafePointer<Float>) -> Int {
        var c = v > mid[7] ? 8 : 0
        if v > mid[c + 3] { c += 4 }
        if v > mid[c + 1] { c += 2 }
        if v > mid[c] { c += 1 }
        return c
    }

    /// One block's values and weights (padding of a partial last block is left out: it is never decoded).
    /// Owns raw storage, one per worker: the error loop runs ~20 times per block and must not bounds-check.
    /// The errors come from `qst_nf4_block_errors` (one candidate scale per vector lane, the scalar loop's
    /// bits on every path), so a whole grid of candidates costs about one pass over the block.
    struct Block {
        let x: UnsafeMutablePointer<Float>
        let w: UnsafeMutablePointer<Float>
        let values: UnsafeMutablePointer<Float>
        let mid: UnsafeMutablePointer<Float>
        /// Candidate scales and their errors for one kernel call.
        let candidates: UnsafeMutablePointer<Float>
        let errors: UnsafeMutablePointer<Double>
        static let candidateCapacity = 64
        var n = 0

        init(capacity: Int) {
            x = .allocate(capacity: capacity); w = .allocate(capacity: capacity)
            values = .allocate(capacity: 16); mid = .allocate(capacity: 15)
            candidates = .allocate(capacity: Self.candidateCapacity)
            errors = .allocate(capacity: Self.candidateCapacity)
            for i in 0..<16 { values[i] = NF4.codeValues[i] }
            for i in 0..<15 { mid[i] = NF4ScaleSearch.midpoints[i] }
        }

        func release() {
            x.deallocate(); w.deallocate(); values.deallocate(); mid.deallocate()
            candidates.deallocate(); errors.deallocate()
        }

        mutating func load(
            _ src: UnsafePointer<Float>, count: Int, block b: Int, blockSize: Int,
            weights: UnsafePointer<Float>?, rowLength: Int
        ) {
            let lo = b * blockSize
            n = min(count, lo + blockSize) - lo
            x.update(from: src + lo, count: n)
            guard let weights else { w.update(repeating: 1, count: n); return }
            var col = lo % rowLength
            for i in 0..<n {
                w[i] = weights[col]
                col += 1
                if col == rowLength { col = 0 }
            }
        }

        /// `Σ wᵢ (xᵢ − f32(NF4[cᵢ]·s))²` in double with codes by nearest value for scale `s`.
        @inline(__always)
        func error(scale s: Float) -> Double {
            candidates[0] = s
            evaluate(1)
            return errors[0]
        }

        /// `errors[j]` for `candidates[0..<count]`.
        @inline(__always)
        func evaluate(_ count: Int) {
            qst_nf4_block_errors(x, w, Int64(n), candidates, Int64(count), errors, Int32(QST_IMPL_AUTO))
        }

        /// The closed-form best scale for the codes nearest under scale `s`: `Σ w x q / Σ w q²`.
        func refit(scale s: Float) -> Float {
            let r: Float = 1 / s
            var num = 0.0, den = 0.0
            for i in 0..<n {
                let q = Double(values[NF4ScaleSearch.code(x[i] * r, mid)])
                num += Double(w[i]) * Double(x[i]) * q
                den += Double(w[i]) * q * q
            }
            return den > 0 ? Float(num / den) : s
        }

        func bestScale(absmax m: Float, grid: [Float], refinements: Int) -> Float {
            // All-zero and subnormal blocks keep bitsandbytes' treatment.
            guard m.isNormal else { return m }
            // The absmax first, then the grid in order, the first strictly smaller error winning (as one
            // candidate at a time would pick).
            var best = m, bestError = Double.infinity
            var count = 1, next = 0
            candidates[0] = m
            while true {
                while next < grid.count && count < Self.candidateCapacity {
                    let s = m * grid[next]
                    next += 1
                    // A repeat of the absmax (the default grid's 1.0) has its error and cannot win a strict
                    // comparison: leaving it out keeps the result and fits absmax + grid in 16 lanes.
                    guard s.isNormal, s != m else { continue }
                    candidates[count] = s
                    count += 1
                }
                evaluate(count)
                for j in 0..<count where errors[j] < bestError { best = candidates[j]; bestError = errors[j] }
                if next == grid.count { break }
                count = 0
            }
            for _ in 0..<refinements {
                let s = refit(scale: best)
                guard s.isNormal, s > 0 else { break }
                let e = error(scale: s)
                if e < bestError { best = s; bestError = e } else { break }
            }
            return best
        }

        /// Among the 8-bit codes within ±2 of `current` and the one nearest the block's absmax, the one whose decoded
        /// scale `f32(f32(map[q]·absmax2) + offset)` has the least error.
        func bestDoubleQuantCode(
            current: UInt8, absmax: Float, absmax2: Float, offset: Float,
            map: UnsafePointer<Float>
        ) -> UInt8 {
            var near: [Int] = (-2...2).map { Int(current) + $0 }.filter { (0...255).contains($0) }
            let u = (absmax - offset) * (1 / absmax2)
            if u.isFinite { near.append(Int(DynamicMap8.nearestIndex(u, code: map))) }
            // The usable codes move to the front of `near`, their scales into `candidates`, in order.
            var count = 0
            for i in near.indices {
                let q = near[i], s = map[q] * absmax2 + offset
                guard s.isNormal, s > 0 else { continue }
                candidates[count] = s
                near[count] = q
                count += 1
            }
            var best = current, bestError = Double.infinity
            if count > 0 { evaluate(count) }
            for j in 0..<count where errors[j] < bestError { best = UInt8(near[j]); bestError = errors[j] }
            return best
        }
    }
}
