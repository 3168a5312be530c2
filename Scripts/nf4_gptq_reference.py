#!/usr/bin/env python3
"""Independent NumPy statement of QST's GPTQ in the NF4 grid (Formats/NF4.md §7), without double quantization.

    nf4_gptq_reference.py W.npy X.npy OUT.npz [--cols K] [--block-size 64] [--batch 128] [--damp 0.01] [--act-order]
                          [--refit-passes N] [--full-inputs XF.npy]

W: float32 [rows, cols] (output × input channels); X: float32 [tokens, cols] calibration inputs (flat vectors
are reshaped to K columns with --cols). Writes:
  codes       uint8 [rows, cols]   NF4 code of every weight
  scales      float32 [rows, cols / block]   block scales (what the decoder multiplies by)
  dequant     float32 [rows, cols] NF4[code] · scale
  out_error   float64 ‖(W − Ŵ) Xᵀ‖²_F
  target      float32 [rows, cols] the weights GPTQ quantized (W, or the asymmetric target with --full-inputs)

The algorithm (Frantar et al. 2022, "GPTQ"), NF4 instead of a uniform grid:
  H = XᵀX (float64); dead channels (H[i,i] = 0): H[i,i] = 1 and W[:, i] = 0; H += damp · mean(diag H) · I;
  U = upper Cholesky factor of H⁻¹ (H⁻¹ = UᵀU), as float32.
  For each batch of `batch` columns, for each column i: when i starts a block, each row's block scale is the
  weighted scale search of Scripts/nf4_search_reference.py on the row's current (error-updated) block values,
  weights diag(H) (+ 1e-3 of its mean); then q = NF4[nearest code of w · f32(1/s)] · s, e = (w − q) / U[i,i],
  W[:, j] −= e · U[i, j] for the batch's later columns; after the batch W[:, later] −= E · U[batch, later].
Float32 for W, errors and U (as QST), float64 for H and its factorizations.

--full-inputs XF (asymmetric target, GPTAQ): X are the quantized model's inputs, XF the full-precision model's;
GPTQ runs on W* = rows w* = (H + λI)⁻¹ (C + λI) w, H = XᵀX, C = XᵀXF, λ = damp · mean(diag H), instead of W.

--refit-passes N (scale refit after GPTQ): codes fixed, each row's block scales s minimise
(w − ŵ)ᵀ (H + λI) (w − ŵ), ŵ_j = s_b(j) · NF4[c_j] (H with dead channels' diagonal 1, w with dead channels 0),
by N coordinate passes: s_a ← (c_a − Σ_{b≠a} A_ab s_b) / A_aa with A_ab = Σ_{i∈a, j∈b} z_i H_ij z_j and
c_a = Σ_{i∈a} z_i (H w)_i, kept only if positive and the objective goes down; a pass that changes nothing ends it.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nf4_search_reference import NF4, codes_for, grid, search  # noqa: E402


def inverse_cholesky_upper(h, damp):
    n = h.shape[0]
    h = h.copy()
    lam = damp * np.mean(np.diag(h))
    h[np.diag_indices(n)] += lam
    l = np.linalg.cholesky(h)                       # H = L Lᵀ
    linv = np.linalg.inv(l)
    hinv = linv.T @ linv                            # H⁻¹
    hinv = (hinv + hinv.T) / 2
    return np.linalg.cholesky(hinv).T               # upper U with H⁻¹ = UᵀU


def asymmetric_target(w, x, xf, damp):
    h = x.astype(np.float64).T @ x.astype(np.float64)
    c = x.astype(np.float64).T @ xf.astype(np.float64)
    lam = damp * np.mean(np.diag(h))
    n = h.shape[0]
    rhs = (c + lam * np.eye(n)) @ w.astype(np.float64).T          # columns (C + λI) w_r
    return np.ascontiguousarray(np.linalg.solve(h + lam * np.eye(n), rhs).T, dtype=np.float32)


def refit_scales(w, x, codes, scales, block, damp, passes):
    rows, cols = w.shape
    nb = cols // block
    h = x.astype(np.float64).T @ x.astype(np.float64)
    dead = np.diag(h).astype(np.float32) <= 0
    h[dead, dead] = 1
    h[np.diag_indices(cols)] += damp * np.mean(np.diag(h))
    wd = w.astype(np.float64).copy()
    wd[:, dead] = 0
    z = NF4[codes].astype(np.float64)
    scales = scales.copy()
    for r in range(rows):
        zb = np.zeros((cols, nb))                                  # column a: z restricted to block a
        for a in range(nb):
            zb[a * block:(a + 1) * block, a] = z[r, a * block:(a + 1) * block]
        A = zb.T @ h @ zb
        c = zb.T @ (h @ wd[r])
        s = scales[r]
        for _ in range(passes):
            changed = False
            for a in range(nb):
                if A[a, a] <= 0:
                    continue
                g = c[a] - A[a] @ s.astype(np.float64) + A[a, a] * np.float64(s[a])
                new = np.float32(g / A[a, a])
                if not (np.isfinite(new) and new > 0) or new == s[a]:
                    continue
                old, nw = np.float64(s[a]), np.float64(new)
                if A[a, a] * (nw * nw - old * old) - 2 * g * (nw - old) < 0:
                    s[a] = new
                    changed = True
            if not changed:
                break
    return scales


def gptq_nf4(w, x, block, batch, damp, multipliers, refinements, act_order=False):
    rows, cols = w.shape
    h = x.astype(np.float64).T @ x.astype(np.float64)
    h32 = h.astype(np.float32)
    diag = np.diag(h32).copy()
    dead = diag <= 0
    w0 = w.astype(np.float32).copy()
    w0[:, dead] = 0
    h[dead, dead] = 1
    mean = np.maximum(diag, 0).astype(np.float64).mean()
    imp = (np.maximum(diag, 0) + np.float32(mean * 1e-3)).astype(np.float32)
    # Act-order: columns by decreasing diag(H) (ties by index); blocks stay consecutive channels, a block's
    # scale is chosen when its first channel in this order comes up.
    perm = np.argsort(-diag.astype(np.float64), kind="stable") if act_order else np.arange(cols)
    u = inverse_cholesky_upper(h[np.ix_(perm, perm)], damp).astype(np.float32)
    w = w0[:, perm].copy()
    pos = np.empty(cols, dtype=np.int64)
    pos[perm] = np.arange(cols)
    started = np.zeros(cols // block, dtype=bool)

    codes = np.zeros((rows, cols), dtype=np.uint8)
    scales = np.zeros((rows, cols // block), dtype=np.float32)
    for i1 in range(0, cols, batch):
        i2 = min(cols, i1 + batch)
        err = np.zeros((rows, i2 - i1), dtype=np.float32)
        for c in range(i1, i2):
            g = perm[c] // block
            if not started[g]:
                started[g] = True
                xb = w[:, pos[g * block:(g + 1) * block]]
                wb = np.broadcast_to(imp[g * block:(g + 1) * block], xb.shape)
                _, _, s, _ = search(xb, wb, multipliers, refinements)
                scales[:, g] = s
            s = scales[:, g]
            code = codes_for(w[:, c:c + 1], s)[:, 0]
            codes[:, perm[c]] = code
            q = (NF4[code] * s).astype(np.float32)
            e = ((w[:, c] - q) / u[c, c]).astype(np.float32)
            err[:, c - i1] = e
            if c + 1 < i2:
                w[:, c + 1:i2] -= (e[:, None] * u[c, c + 1:i2][None, :]).astype(np.float32)
        if i2 < cols:
            w[:, i2:] -= (err @ u[i1:i2, i2:]).astype(np.float32)
    dequant = (NF4[codes] * np.repeat(scales, block, axis=1)).astype(np.float32)
    return codes, scales, dequant


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights")
    ap.add_argument("inputs")
    ap.add_argument("out")
    ap.add_argument("--cols", type=int)
    ap.add_argument("--block-size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--damp", type=float, default=0.01)
    ap.add_argument("--act-order", action="store_true")
    ap.add_argument("--refit-passes", type=int, default=0)
    ap.add_argument("--full-inputs")
    a = ap.parse_args()
    w = np.load(a.weights).astype(np.float32)
    x = np.load(a.inputs).astype(np.float32)
    xf = np.load(a.full_inputs).astype(np.float32) if a.full_inputs else None
    if a.cols:
        w, x = w.reshape(-1, a.cols), x.reshape(-1, a.cols)
        xf = xf.reshape(-1, a.cols) if xf is not None else None
    if w.ndim != 2 or x.ndim != 2 or x.shape[1] != w.shape[1]:
        raise SystemExit(f"{a.weights}, {a.inputs}: shapes {w.shape} and {x.shape} do not fit W[rows, K], X[tokens, K]")
    if w.shape[1] % a.block_size or a.batch % a.block_size:
        raise SystemExit(f"{a.weights}: rows of {w.shape[1]} or batch {a.batch} not whole blocks of {a.block_size}")
    target = asymmetric_target(w, x, xf, a.damp) if xf is not None else w
    codes, scales, dequant = gptq_nf4(target, x, a.block_size, a.batch, a.damp, grid(0.80, 1.10, 15), 2, a.act_order)
    if a.refit_passes > 0:
        scales = refit_scales(target, x, codes, scales, a.block_size, a.damp, a.refit_passes)
        dequant = (NF4[codes] * np.repeat(scales, a.block_size, axis=1)).astype(np.float32)
    d = (target.astype(np.float64) - dequant.astype(np.float64)) @ x.astype(np.float64).T
    np.savez(a.out, codes=codes, scales=scales, dequant=dequant, out_error=np.array([(d * d).sum()]),
             target=np.ascontiguousarray(target))


if __name__ == "__main__":
    main()
