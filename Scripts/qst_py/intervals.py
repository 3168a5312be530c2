"""Confidence intervals the benchmark scripts report beside an accuracy."""
import math


def wilson(correct, n, z=1.96):
    """Wilson score interval of a proportion (95 % for z = 1.96), as fractions; (0, 0) for n = 0."""
    if n == 0:
        return (0.0, 0.0)
    p = correct / n
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (c - h, c + h)


def paired_difference(a, b, z=1.96):
    """Mean of a − b over paired 0/1 outcomes (the same questions scored by two models) with its normal 95 %
    interval, as fractions. Only the questions the two disagree on move it, so the interval is much narrower
    than two separate Wilson intervals; (0, 0, 0) for no pairs."""
    n = len(a)
    if n != len(b):
        raise ValueError(f"paired_difference: {n} outcomes against {len(b)}")
    if n == 0:
        return (0.0, 0.0, 0.0)
    d = [x - y for x, y in zip(a, b)]
    mean = sum(d) / n
    var = sum((x - mean) ** 2 for x in d) / max(1, n - 1)
    h = z * math.sqrt(var / n)
    return (mean, mean - h, mean + h)
