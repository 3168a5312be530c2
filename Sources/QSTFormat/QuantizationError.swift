import Foundation
import QSTCore

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
            let p = parts.baseAddress!
            let sp = SendablePointer(p), so = SendableConstPointer(o), sr = SendableConstPointer(r)
            Parallel.forRanges(chunks) { c0, c1 in
                for c in c0..<c1 {
                    var sig = 0.0, err = 0.0, mx = 0.0
                    let lo = c * per, hi = min(n, lo + per)
                    if lo < hi {
                        for k in lo..<hi {
                            let x = Double(so.pointer[k]), d = x - Double(sr.pointer[k])
                            sig += x * x; err += d * d; mx = max(mx, abs(d))
                        }
                    }
                    sp.pointer[c] = (sig, err, mx)
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

enum QuantizationError {
    static func sqnr(original: UnsafeBufferPointer<Float>, tensor: NF4Tensor) -> Double {
        let deq = NF4.dequantize(tensor)
        let s = deq.withUnsafeBufferPointer { ErrorStatistics.compute(original: original, reconstructed: $0) }
        return s.sqnrDB.isFinite ? s.sqnrDB : 999
    }
}
