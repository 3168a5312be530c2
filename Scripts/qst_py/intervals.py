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
