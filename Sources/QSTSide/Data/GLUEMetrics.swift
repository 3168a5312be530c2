import Foundation

/// The GLUE tasks' official metrics (Wang et al., 2018): accuracy (SST-2, RTE), F1 of the positive class
/// and accuracy (MRPC, QQP), Matthews correlation (CoLA), Pearson and Spearman correlation (STS-B).
/// Degenerate cases follow scikit-learn: F1 and MCC are 0 when their denominator is 0.
public enum GLUEMetrics {
    public static func accuracy(predicted: [Int], gold: [Int]) -> Double {
        guard !gold.isEmpty else { return 0 }
        return Double(zip(predicted, gold).filter { $0 == $1 }.count) / Double(gold.count)
    }

    /// F1 of class `positive`: 2·TP / (2·TP + FP + FN).
    public static func f1(predicted: [Int], gold: [Int], positive: Int = 1) -> Double {
        var tp = 0, fp = 0, fn = 0
        for (p, g) in zip(predicted, gold) {
            if p == positive && g == positive {
                tp += 1
            } else if p == positive {
                fp += 1
            } else if g == positive {
                fn += 1
            }
        }
        let denominator = 2 * tp + fp + fn
        return denominator == 0 ? 0 : Double(2 * tp) / Double(denominator)
    }

    /// Matthews correlation coefficient, multi-class form (Gorodkin, 2004), equal to the binary
    /// (TP·TN − FP·FN) / √((TP+FP)(TP+FN)(TN+FP)(TN+FN)) for two classes.
    public static func matthews(predicted: [Int], gold: [Int]) -> Double {
        let classes = Set(predicted + gold)
        let s = Double(gold.count)
        var correct = 0.0, sumPT = 0.0, sumPP = 0.0, sumTT = 0.0
        for (p, g) in zip(predicted, gold) where p == g { correct += 1 }
        for k in classes {
            let pk = Double(predicted.filter { $0 == k }.count), tk = Double(gold.filter { $0 == k }.count)
            sumPT += pk * tk; sumPP += pk * pk; sumTT += tk * tk
        }
        let denominator = ((s * s - sumPP) * (s * s - sumTT)).squareRoot()
        return denominator == 0 ? 0 : (correct * s - sumPT) / denominator
    }

    /// Pearson's r; 0 when either side is constant.
    public static func pearson(_ x: [Double], _ y: [Double]) -> Double {
        let n = Double(min(x.count, y.count))
        guard n > 0 else { return 0 }
        let mx = x.reduce(0, +) / n, my = y.reduce(0, +) / n
        var sxy = 0.0, sxx = 0.0, syy = 0.0
        for (a, b) in zip(x, y) { sxy += (a - mx) * (b - my); sxx += (a - mx) * (a - mx); syy += (b - my) * (b - my) }
        let denominator = (sxx * syy).squareRoot()
        return denominator == 0 ? 0 : sxy / denominator
    }

    /// Spearman's ρ: Pearson's r of the ranks, ties given their average rank (as SciPy's `spearmanr`).
    public static func spearman(_ x: [Double], _ y: [Double]) -> Double { pearson(ranks(x), ranks(y)) }

    /// 1-based ranks with ties averaged.
    public static func ranks(_ v: [Double]) -> [Double] {
        let order = v.indices.sorted { v[$0] < v[$1] }
        var out = [Double](repeating: 0, count: v.count)
        var i = 0
        while i < order.count {
            var j = i
            while j + 1 < order.count && v[order[j + 1]] == v[order[i]] { j += 1 }
            let rank = Double(i + j) / 2 + 1
            for k in i...j { out[order[k]] = rank }
            i = j + 1
        }
        return out
    }
}

extension GLUETask {
    /// The metrics GLUE reports for this task, the first being the one its leaderboard ranks by.
    public var officialMetrics: [String] {
        switch name {
        case "mrpc": return ["f1", "accuracy"]
        case "cola": return ["matthews_correlation"]
        default: return ["accuracy"]
        }
    }

    /// The official metrics of `predicted` classes against `gold` (class 1 is MRPC's positive class, "paraphrase").
    public func metrics(predicted: [Int], gold: [Int]) -> [String: Double] {
        var out: [String: Double] = [:]
        for m in officialMetrics {
            switch m {
            case "f1": out[m] = GLUEMetrics.f1(predicted: predicted, gold: gold, positive: 1)
            case "matthews_correlation": out[m] = GLUEMetrics.matthews(predicted: predicted, gold: gold)
            default: out[m] = GLUEMetrics.accuracy(predicted: predicted, gold: gold)
            }
        }
        return out
    }
}
