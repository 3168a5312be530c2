#!/usr/bin/env python3
"""Linear probes on the frozen model's hidden states (what `qst-eval states` writes): how well a
classifier that only reads the frozen features, linearly, does on a GLUE task. A side network that
reads the same states can do better only by computing new features; the probe is the floor of
what reading alone gives, and a yardstick for the tuned methods' accuracy.

  probe_linear.py TRAIN_DIR DEV_DIR [--heldout 1000] [--every 3] [--json]

TRAIN_DIR, DEV_DIR: folders with last.npy [n, L+2, d], mean.npy [n, L+1, d] and labels.npy [n]
(Formats/STATES.md). The last --heldout training examples choose each probe's L2 strength
(from 1, 10, 100, 1000 for one layer; 1e2 … 1e5 for a concatenation); the probe is then refit on all
training examples and scored once on DEV_DIR. Two-class tasks only.

Probes: logistic regression (Newton's method, float64, standardised features, unpenalised bias) on
one layer's state — the last prompt token's (what the LM head and a classification head read) or the
mean over the prompt's tokens — for every --every'th layer, the final norm's output, and the best
layer; then ridge regression on ±1 targets over every --every'th layer at once (last, mean, both),
solved in its dual form (n × n) since the concatenations are wider than the training set is long.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qst_py.venv import ensure_venv  # noqa: E402

ensure_venv(("numpy",))

import numpy as np  # noqa: E402


def load(folder):
    arrays = {k: np.load(os.path.join(folder, k + ".npy"), mmap_mode="r") for k in ("last", "mean", "labels")}
    y = np.asarray(arrays["labels"])
    if set(np.unique(y)) - {0, 1}:
        raise SystemExit(f"probe_linear.py: {folder}/labels.npy: only two-class tasks (labels 0/1) are probed")
    n = len(y)
    for k in ("last", "mean"):
        if arrays[k].shape[0] != n:
            raise SystemExit(f"probe_linear.py: {folder}/{k}.npy has {arrays[k].shape[0]} rows, labels.npy {n}")
    return arrays["last"], arrays["mean"], y.astype(np.float64)


def standardise(train, *others):
    mu, sd = train.mean(0), train.std(0) + 1e-6
    return [((x - mu) / sd).astype(np.float64) for x in (train,) + others]


def logistic(xtr, ytr, xev, lams):
    """{λ: predicted classes of xev} from L2-penalised logistic regressions fitted on (xtr, ytr)."""
    a, b = standardise(xtr, xev)
    a = np.hstack([a, np.ones((len(a), 1))])
    b = np.hstack([b, np.ones((len(b), 1))])
    out = {}
    for lam in lams:
        reg = lam * np.eye(a.shape[1])
        reg[-1, -1] = 0
        w = np.zeros(a.shape[1])
        for _ in range(50):
            p = 1 / (1 + np.exp(-(a @ w)))
            step = np.linalg.solve((a * (p * (1 - p))[:, None]).T @ a + reg, a.T @ (p - ytr) + reg @ w)
            w -= step
            if np.abs(step).max() < 1e-7:
                break
        out[lam] = (b @ w > 0).astype(np.float64)
    return out


def ridge(xtr, ytr, xev, lams):
    """{λ: predicted classes of xev} from ridge regression on ±1 targets, in the dual (kernel) form; the
    n × n Gram matrix, the costly part for wide concatenations, is formed once for every λ."""
    a, b = standardise(xtr, xev)
    t = 2 * ytr - 1
    gram = a @ a.T
    out = {}
    for lam in lams:
        alpha = np.linalg.solve(gram + lam * np.eye(len(a)), t - t.mean())
        out[lam] = ((b @ (a.T @ alpha) + t.mean()) > 0).astype(np.float64)
    return out


def probe(fit, lams, xtr, ytr, xdev, ydev, heldout):
    """Chooses the L2 strength on the last `heldout` training rows, refits on all, scores dev once."""
    k = len(ytr) - heldout
    scores = {lam: float((pred == ytr[k:]).mean()) for lam, pred in fit(xtr[:k], ytr[:k], xtr[k:], lams).items()}
    lam = max(scores, key=scores.get)
    return {"lambda": lam, "heldout": scores[lam], "dev": float((fit(xtr, ytr, xdev, [lam])[lam] == ydev).mean())}


def main(argv):
    ap = argparse.ArgumentParser(description="Linear probes on qst-eval states' arrays.")
    ap.add_argument("train")
    ap.add_argument("dev")
    ap.add_argument("--heldout", type=int, default=1000)
    ap.add_argument("--every", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    tl, tm, ty = load(a.train)
    dl, dm, dy = load(a.dev)
    if not 0 < a.heldout < len(ty):
        raise SystemExit(f"probe_linear.py: --heldout {a.heldout} must leave training examples ({len(ty)})")
    layers = tl.shape[1] - 2
    picked = list(range(a.every, layers + 1, a.every))
    rows = []

    def add(name, fit, lams, xtr, xdev):
        r = probe(fit, lams, np.asarray(xtr, np.float64), ty, np.asarray(xdev, np.float64), dy, a.heldout)
        rows.append(dict(probe=name, **r))
        if not a.json:
            print(f"{name:44s} held-out {100 * r['heldout']:5.1f} %  dev {100 * r['dev']:5.2f} %  (λ {r['lambda']:g})",
                  flush=True)

    one = [1, 10, 100, 1000]
    for v in picked:
        add(f"logistic, last token, layer {v}", logistic, one, tl[:, v], dl[:, v])
    add("logistic, last token, final norm", logistic, one, tl[:, layers + 1], dl[:, layers + 1])
    for v in picked:
        add(f"logistic, token mean, layer {v}", logistic, one, tm[:, v], dm[:, v])
    many = [1e2, 1e3, 1e4, 1e5]
    flat = lambda x: np.asarray(x[:, picked], np.float64).reshape(len(x), -1)  # noqa: E731
    add(f"ridge, last token, layers {picked[0]}..{picked[-1]}", ridge, many, flat(tl), flat(dl))
    add(f"ridge, token mean, layers {picked[0]}..{picked[-1]}", ridge, many, flat(tm), flat(dm))
    add(f"ridge, last + mean, layers {picked[0]}..{picked[-1]}", ridge, many,
        np.hstack([flat(tl), flat(tm)]), np.hstack([flat(dl), flat(dm)]))
    best = max(rows, key=lambda r: r["heldout"])
    summary = {"train": len(ty), "heldout": a.heldout, "dev": len(dy), "layers": layers, "probes": rows,
               "bestByHeldout": best, "bestDev": max(r["dev"] for r in rows)}
    if a.json:
        print(json.dumps(summary, indent=1))
    else:
        print(f"best by held-out: {best['probe']} — dev {100 * best['dev']:.2f} %; "
              f"highest dev of any probe {100 * summary['bestDev']:.2f} % ({len(dy)} examples)")


if __name__ == "__main__":
    main(sys.argv[1:])
