import Foundation
import QSTCore
import QSTKernels

/// Error statistics of a quantized tensor against its original values.
public struct ErrorStatistics: Codable, Sendable {
    public var mse: Double
    public var maxAbsError: Double
    public var relativeFrobenius: Double
    public var sqnrDB: Double
    public var signalPower: Double
    public var count: Int

    /// Accumulates in Double over both cores.
    public static func compute(original: UnsafeBufferPointer<Float>, reconstructed: UnsafeBufferPointer<Float>) -> ErrorStatistics {
        let n = original.count
        let chunks = max(1, min(64, n / 65536))
        var partial = [(Double, Double, Double)](repeating: (0, 0, 0), count: chunks)
        let per = (n + chunks - 1) / chunks
        let o = original.baseAddress!, r = reconstructed.baseAddress!
        partial.withUnsafeMutableBufferPointer { parts in
            let sp = SendablePointer(parts.baseAddress!), so = SendableConstPointer(o), sr = SendableConstPointer(r)
            Parallel.forRanges(chunks) { c0, c1 in
                for c in c0..<c1 {
                    let lo = c * per, hi = min(n, lo + per)
                    sp.pointer[c] = lo < hi ? sums(so.pointer + lo, sr.pointer + lo, hi - lo) : (0, 0, 0)
                }
            }
        }
        let sig = partial.reduce(0) { $0 + $1.0 }, err = partial.reduce(0) { $0 + $1.1 }
        let mx = partial.reduce(0) { max($0, $1.2) }
        return ErrorStatistics(mse: err / Double(max(n, 1)), maxAbsError: mx,
                               relativeFrobenius: sig > 0 ? (err / sig).squareRoot() : (err > 0 ? .infinity : 0),
                               sqnrDB: err > 0 ? 10 * log10(sig / err) : .infinity, signalPower: sig, count: n)
    }
}

@inline(__always)
private func sums(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ n: Int) -> (Double, Double, Double) {
    var sig = 0.0, err = 0.0, mx = 0.0
    qst_error_sums(x, y, n, &sig, &err, &mx)
    return (sig, err, mx)
}

enum QuantizationError {
    static func sqnr(original: UnsafeBufferPointer<Float>, tensor: NF4Tensor) -> Double {
        let deq = NF4.dequantize(tensor)
        let s = deq.withUnsafeBufferPointer { ErrorStatistics.compute(original: original, reconstructed: $0) }
        return s.sqnrDB.isFinite ? s.sqnrDB : 999
    }
}
