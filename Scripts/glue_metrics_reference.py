#!/usr/bin/env python3
"""Independent reference of the GLUE metrics, standard library only (no NumPy, no scikit-learn), for tests.

    glue_metrics_reference.py CASES.json OUT.json

CASES.json is a list of {"predicted": [int], "gold": [int], "x": [float], "y": [float]}; OUT.json gets, per
case, accuracy, f1 (positive class 1), matthews_correlation, pearson and spearman. Written from the
definitions: F1 = harmonic mean of precision and recall; MCC as the correlation of the one-hot
indicator matrices (binary: (TP·TN − FP·FN)/√(…)); Pearson from statistics.correlation; Spearman = Pearson
of mid-ranks (rank = number of smaller values + (number of equal values + 1)/2). Degenerate cases give 0,
as scikit-learn and SciPy-free GLUE scripts do.
"""
import json
import math
import statistics
import sys


def accuracy(p, g):
    return sum(a == b for a, b in zip(p, g)) / len(g) if g else 0.0


def f1(p, g, positive=1):
    tp = sum(a == positive and b == positive for a, b in zip(p, g))
    predicted_pos = sum(a == positive for a in p)
    actual_pos = sum(b == positive for b in g)
    if tp == 0:
        return 0.0
    precision, recall = tp / predicted_pos, tp / actual_pos
    return 2 * precision * recall / (precision + recall)


def matthews(p, g):
    classes = sorted(set(p) | set(g))
    n = len(g)
    if classes and len(classes) <= 2:
        pos = classes[-1]
        tp = sum(a == pos and b == pos for a, b in zip(p, g))
        tn = sum(a != pos and b != pos for a, b in zip(p, g))
        fp = sum(a == pos and b != pos for a, b in zip(p, g))
        fn = sum(a != pos and b == pos for a, b in zip(p, g))
        den = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
        return (tp * tn - fp * fn) / den if den else 0.0
    # Multi-class: covariance of one-hot indicators, summed over classes.
    def cov(u, v):
        total = 0.0
        for k in classes:
            uk = [1.0 if a == k else 0.0 for a in u]
            vk = [1.0 if b == k else 0.0 for b in v]
            mu, mv = sum(uk) / n, sum(vk) / n
            total += sum((a - mu) * (b - mv) for a, b in zip(uk, vk))
        return total
    den = math.sqrt(cov(p, p) * cov(g, g))
    return cov(p, g) / den if den else 0.0


def pearson(x, y):
    try:
        return statistics.correlation(x, y)
    except statistics.StatisticsError:
        return 0.0


def midranks(v):
    return [sum(w < a for w in v) + (sum(w == a for w in v) + 1) / 2 for a in v]


def main():
    cases = json.load(open(sys.argv[1]))
    out = []
    for c in cases:
        p, g, x, y = c["predicted"], c["gold"], c["x"], c["y"]
        out.append({"accuracy": accuracy(p, g), "f1": f1(p, g), "matthews_correlation": matthews(p, g),
                    "pearson": pearson(x, y), "spearman": pearson(midranks(x), midranks(y))})
    json.dump(out, open(sys.argv[2], "w"))


if __name__ == "__main__":
    main()
