import CBLAS
import QSTKernels
import Foundation
import QSTCore

/// Cross-entropy through a frozen LM head without materialising `[n, vocab]` logits.
///
/// Positions with a label are packed into chunks of `chunkRows`; for each chunk the `[chunkRows, vocab]`
/// logits are built tile by tile from `head`, turned into a stable log-softmax, and (if wanted) into
/// `dlogits = (softmax − onehot)·gradScale`, which is multiplied back through the head into `dHidden`.
/// Every chunk fetches each head tile twice, so with a decoded (NF4) head larger chunks amortise decoding.
public enum ChunkedCrossEntropy {
    public static let ignoreIndex: Int32 = -100

    public struct Result: Sendable, Equatable {
        /// Σ over labelled positions of −log p(label).
        public var lossSum: Double
        /// Number of labelled positions.
        public var count: Int
        /// `lossSum / count` (0 when nothing is labelled).
        public var mean: Double { count == 0 ? 0 : lossSum / Double(count) }
    }

    /// - Parameters:
    ///   - hidden: `[n, dim]` final hidden states (after the final norm).
    ///   - labels: `[n]` target token per position (already shifted), `ignoreIndex` = skip.
    ///   - dHidden: `[n, dim]`, accumulates `gradScale · ∂lossSum/∂hidden`; nil computes the loss only.
    ///   - gradScale: defaults to `1/count`, i.e. the gradient of the mean loss.
    /// - Throws: `QSTError` (`tokenOutOfRange`) when a label is outside `0..<vocabSize`.
    public static func lossAndGradient(
        hidden: UnsafePointer<Float>, labels: UnsafePointer<Int32>, n: Int,
        head: some HeadRows, dHidden: UnsafeMutablePointer<Float>?,
        gradScale: Float? = nil, chunkRows: Int = 128
    ) throws -> Result {
        let V = head.vocabSize, d = head.dim
        var rows: [Int] = []
        for i in 0..<n where labels[i] != ignoreIndex {
            guard labels[i] >= 0 && Int(labels[i]) < V else {
                throw QSTError(
                    "cross-entropy: label \(labels[i]) at position \(i) is outside vocabulary 0..<\(V)",
                    kind: .tokenOutOfRange)
            }
            rows.append(i)
        }
        guard !rows.isEmpty else { return Result(lossSum: 0, count: 0) }
        let scale = gradScale ?? 1 / Float(rows.count)
        let C = max(1, min(chunkRows, rows.count))
        let tile = min(head.tileRows, V)
        let packed = Buffer<Float>(count: C * d)
        let logits = Buffer<Float>(count: C * V)
        let scratch = Buffer<Float>(count: tile * d)
        let dPacked = Buffer<Float>(count: dHidden == nil ? 0 : C * d)
        let rowLoss = Buffer<Double>(count: C)
        var lossSum = 0.0

        var c0 = 0
        while c0 < rows.count {
            let cn = min(C, rows.count - c0)
            for r in 0..<cn { (packed.pointer + r * d).update(from: hidden + rows[c0 + r] * d, count: d) }
            var t0 = 0
            while t0 < V {
                let tn = min(tile, V - t0)
                let w = head.rows(start: t0, count: tn, scratch: scratch.pointer)
                cblas_sgemm(
                    CblasRowMajor, CblasNoTrans, CblasTrans, Int32(cn), Int32(tn), Int32(d),
                    1, packed.pointer, Int32(d), w, Int32(d), 0, logits.pointer + t0, Int32(V))
                t0 += tn
            }
            let lp = SendablePointer(logits.pointer), lossp = SendablePointer(rowLoss.pointer)
            let chunkLabels = (0..<cn).map { Int(labels[rows[c0 + $0]]) }
            let wantGrad = dHidden != nil
            Parallel.forRanges(cn, minChunk: 1) { r0, r1 in
                for r in r0..<r1 {
                    let row = lp + r * V
                    let labelLogit = row[chunkLabels[r]]
                    // One exp per logit, kept for the gradient (QSTKernels' vector loop: libm's scalar expf
                    // over the 49,152 logits of every labelled row was a fifth of an instruction-tuning step).
                    var mx: Float = 0, sum = 0.0
                    let rc = qst_exp_from_max(row.base, Int64(V), &mx, &sum, Int32(QST_VEC_AUTO.rawValue))
                    precondition(rc == 0, "qst_exp_from_max refused a row of \(V) logits")
                    lossp[r] = Double(mx) + Foundation.log(sum) - Double(labelLogit)
                    if wantGrad {
                        let f = Float(Double(scale) / sum)
                        for j in 0..<V { row[j] *= f }
                        row[chunkLabels[r]] -= scale
                    }
                }
            }
            for r in 0..<cn { lossSum += rowLoss[r] }
            if let dHidden {
                t0 = 0
                while t0 < V {
                    let tn = min(tile, V - t0)
                    let w = head.rows(start: t0, count: tn, scratch: scratch.pointer)
                    cblas_sgemm(
                        CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(cn), Int32(d), Int32(tn),
                        1, logits.pointer + t0, Int32(V), w, Int32(d), t0 == 0 ? 0 : 1,
                        dPacked.pointer, Int32(d))
                    t0 += tn
                }
                for r in 0..<cn {
                    let dst = dHidden + rows[c0 + r] * d, src = dPacked.pointer + r * d
                    for j in 0..<d { dst[j] += src[j] }
                }
            }
            c0 += cn
        }
        return Result(lossSum: lossSum, count: rows.count)
    }

    /// Logits of a few candidate tokens only: `out [n, candidates.count]`, e.g. answer letters for accuracy.
    /// - Throws: `QSTError` (`tokenOutOfRange`) when a candidate id is outside the vocabulary.
    public static func candidateLogits(
        out: UnsafeMutablePointer<Float>, hidden: UnsafePointer<Float>, n: Int,
        head: some HeadRows, candidates: [Int32]
    ) throws {
        let d = head.dim, k = candidates.count
        guard k > 0 else { return }
        let w = Buffer<Float>(count: k * d)
        let scratch = Buffer<Float>(count: d)
        for (c, id) in candidates.enumerated() {
            guard id >= 0 && Int(id) < head.vocabSize else {
                throw QSTError(
                    "candidate logits: token id \(id) is outside vocabulary 0..<\(head.vocabSize)",
                    kind: .tokenOutOfRange)
            }
            (w.pointer + c * d).update(from: head.rows(start: Int(id), count: 1, scratch: scratch.pointer), count: d)
        }
        cblas_sgemm(
            CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), Int32(k), Int32(d),
            1, hidden, Int32(d), w.pointer, Int32(d), 0, out, Int32(k))
    }

    /// Full logits `out [n, vocabSize]` (for generation, where `n` is small).
    public static func logits(
        out: UnsafeMutablePointer<Float>, hidden: UnsafePointer<Float>, n: Int,
        head: some HeadRows
    ) {
        let V = head.vocabSize, d = head.dim, tile = min(head.tileRows, V)
        let scratch = Buffer<Float>(count: tile * d)
        var t0 = 0
        while t0 < V {
            let tn = min(tile, V - t0)
            let w = head.rows(start: t0, count: tn, scratch: scratch.pointer)
            cblas_sgemm(
                CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), Int32(tn), Int32(d),
                1, hidden, Int32(d), w, Int32(d), 0, out + t0, Int32(V))
            t0 += tn
        }
    }
}
