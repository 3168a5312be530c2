#!/usr/bin/env python3
"""Independent NumPy statement of QST's NF4 scale search (Formats/NF4.md §6), without double quantization.

    nf4_search_reference.py VALUES.npy OUT.npz --row-length K [--importance IMP.npy] [--block-size 64]
                            [--grid-low 0.8 --grid-high 1.1 --grid-steps 15 --refinements 2]

VALUES: float32 vector (a row-major [rows, K] matrix flattened); IMP: float32 [K] weights per input channel
(absent = all ones). Writes per block (float64 unless said):
  absmax            float32 block absmax (bitsandbytes' scale)
  absmax_error      Σ w (x − f32(NF4[c]·absmax))² with bitsandbytes' codes
  scale             float32 searched scale
  error             the same sum for the searched scale and its nearest codes
Every sum is Σ over the block's elements of w·d² with d = float64(x) − float64(float32(NF4[c]·s)).
"""
import argparse

import numpy as np

NF4 = np.array([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0], dtype=np.float32)
# bitsandbytes' decision-tree thresholds (decimal literals of its CUDA kernel), as float32.
MIDPOINTS = np.array([
    -0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544,
    -0.23460740596055984, -0.13791173323988914, -0.045525018125772476, 0.03979014977812767,
    0.1202552504837513, 0.2035212516784668, 0.2920137718319893, 0.3893125355243683,
    0.5016634166240692, 0.6427869200706482, 0.8614784181118011], dtype=np.float32)


def codes_for(x, s):
    """Nearest codes for rows x [B, n] under per-row scales s [B]: v = x·f32(1/s), code = #thresholds < v."""
    r = (np.float32(1) / s).astype(np.float32)
    v = (x * r[:, None]).astype(np.float32)
    return np.searchsorted(MIDPOINTS, v, side="left")


def errors(x, w, s):
    """Σ w (x − f32(NF4[c]·s))² per row, codes nearest for s."""
    c = codes_for(x, s)
    deq = (NF4[c] * s[:, None]).astype(np.float32)
    d = x.astype(np.float64) - deq.astype(np.float64)
    return (w.astype(np.float64) * d * d).sum(axis=1), c


def grid(low, high, steps):
    low, high = np.float32(low), np.float32(high)
    step = np.float32((high - low) / np.float32(steps))
    return [np.float32(low + np.float32(i) * step) for i in range(steps + 1)]


def search(x, w, multipliers, refinements):
    m = np.abs(x).max(axis=1).astype(np.float32)
    normal = m >= np.finfo(np.float32).tiny
    safe = np.where(normal, m, np.float32(1))
    base, _ = errors(x, w, safe)
    best, best_err = safe.copy(), base.copy()
    for f in multipliers:
        s = (safe * f).astype(np.float32)
        e, _ = errors(x, w, s)
        better = e < best_err
        best, best_err = np.where(better, s, best), np.where(better, e, best_err)
    active = np.ones(len(m), dtype=bool)
    for _ in range(refinements):
        c = codes_for(x, best)
        q = NF4[c].astype(np.float64)
        num = (w * x.astype(np.float64) * q).sum(axis=1)
        den = (w * q * q).sum(axis=1)
        s = np.where(den > 0, num / np.where(den > 0, den, 1), best).astype(np.float32)
        ok = active & (s >= np.finfo(np.float32).tiny)
        e, _ = errors(x, w, np.where(ok, s, best))
        better = ok & (e < best_err)
        best, best_err = np.where(better, s, best), np.where(better, e, best_err)
        active = better   # a block whose refit did not improve stops, as in QST
    best = np.where(normal, best, m)
    return m, np.where(normal, base, 0.0), best, np.where(normal, best_err, 0.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("values")
    ap.add_argument("out")
    ap.add_argument("--row-length", type=int, required=True)
    ap.add_argument("--importance")
    ap.add_argument("--block-size", type=int, default=64)
    ap.add_argument("--grid-low", type=float, default=0.80)
    ap.add_argument("--grid-high", type=float, default=1.10)
    ap.add_argument("--grid-steps", type=int, default=15)
    ap.add_argument("--refinements", type=int, default=2)
    a = ap.parse_args()
    x = np.load(a.values).astype(np.float32).ravel()
    n, bs = len(x), a.block_size
    if n % bs:
        raise SystemExit(f"{a.values}: {n} values are not whole blocks of {bs}")
    k = a.row_length
    imp = np.load(a.importance).astype(np.float32).ravel() if a.importance else np.ones(k, dtype=np.float32)
    if len(imp) != k:
        raise SystemExit(f"{a.importance}: {len(imp)} channels, rows have {k}")
    w = imp[np.arange(n) % k].reshape(-1, bs)
    m, base, scale, err = search(x.reshape(-1, bs), w,
                                 grid(a.grid_low, a.grid_high, a.grid_steps), a.refinements)
    np.savez(a.out, absmax=m.astype(np.float32), absmax_error=base, scale=scale.astype(np.float32), error=err)


if __name__ == "__main__":
    main()
