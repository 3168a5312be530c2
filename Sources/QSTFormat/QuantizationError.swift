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
    public static func compute(original: UnsafeBufferPointer<Float>, reconstructed: UnsafeBufferPointer<Float>)
        -> ErrorStatistics
    {
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
                    sp[c] = lo < hi ? sums(so.base + lo, sr.base + lo, hi - lo) : (0, 0, 0)
                }
            }
        }
        let sig = partial.reduce(0) { $0 + $1.0 }, err = partial.reduce(0) { $0 + $1.1 }
        let mx = partial.reduce(0) { max($0, $1.2) }
        return ErrorStatistics(
            mse: err / Double(max(n, 1)), maxAbsError: mx,
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
    /// SQNR of an NF4 tensor against its source, dequantizing 64 K elements at a time so that no
    /// second full-size copy of the tensor is ever held.
    /// `threads` caps the cores used (the result does not depend on it).
    static func sqnr(original: UnsafeBufferPointer<Float>, tensor: NF4Tensor, threads: Int = Parallel.defaultThreads)
        -> Double
    {
        let n = tensor.count
        guard n > 0 else { return 999 }
        let chunk = 1 << 16  // a multiple of every allowed block size
        let chunks = (n + chunk - 1) / chunk
        let absmax = tensor.decodedAbsmax()
        var partial = [(Double, Double)](repeating: (0, 0), count: chunks)
        tensor.codes.withUnsafeBufferPointer { codes in
            absmax.withUnsafeBufferPointer { a in
                partial.withUnsafeMutableBufferPointer { parts in
                    let sp = SendablePointer(parts.baseAddress!), so = SendableConstPointer(original.baseAddress!)
                    let sc = SendableConstPointer(codes.baseAddress!), sa = SendableConstPointer(a.baseAddress!)
                    let bs = tensor.blockSize
                    Parallel.forRanges(chunks, threads: threads) { c0, c1 in
                        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: chunk)
                        defer { buffer.deallocate() }
                        for c in c0..<c1 {
                            let start = c * chunk, count = min(chunk, n - start)
                            NF4.dequantize(
                                codes: sc.base, absmax: sa.base, blockSize: bs, start: start, count: count,
                                into: buffer, threads: 1)
                            let s = sums(so.base + start, buffer, count)
                            sp[c] = (s.0, s.1)
                        }
                    }
                }
            }
        }
        let sig = partial.reduce(0) { $0 + $1.0 }, err = partial.reduce(0) { $0 + $1.1 }
        return err > 0 ? 10 * log10(sig / err) : 999
    }
}
