#!/usr/bin/env python3
"""A multi-layer readout of the frozen model's states, trained the way qst-tune trains a side network —
the head that BENCHMARKS.md §39 proposed for issue 15 (a learnt mix of every layer's state at the
classified token), measured on `qst-eval states`' arrays before anyone builds it into the side network.

  readout_adam.py TRAIN_DIR DEV_DIR [--epochs 6] [--lrs 5e-4] [--seeds 2] [--heldout 500]
                  [--forms mix,layers] [--inputs raw,standardised] [--json]

Where probe_linear.py gives each probe its best L2 strength (a search on held-out rows, Newton's method to
the optimum), this trains like qst-tune's GLUE preset: zero-initialised weights, AdamW (β 0.9 / 0.999,
ε 1e-8, decoupled weight decay 0.01 on the weights, none on the mix logits or the bias), the learning rate
warmed up linearly over the first 6 % of the steps then decayed linearly to 0, the gradient clipped to
norm 1, shuffled batches of 16, evaluation on the last --heldout training rows every 50 steps, and dev
scored at the best held-out evaluation (early stopping). It reads every row of last.npy [n, L+2, d]
(embeddings, each layer's output, the final norm's output) at the last prompt token:

  mix:     logit = v · Σ_l softmax(a)_l x_l + b      ELMo's scalar mix: d + L + 3 numbers
  layers:  logit = Σ_l w_l · x_l + b                 one weight vector per layer: (L + 2) d + 1 numbers

with x_l the state as stored (raw) or standardised per feature with the training rows' mean and standard
deviation (which a head in the side network would have to store beside its weights). Two-class tasks.
"""
import argparse
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qst_py.venv import ensure_venv  # noqa: E402

ensure_venv(("numpy",))

import numpy as np  # noqa: E402
from probe_linear import load, standardise  # noqa: E402

BATCH, EVAL_EVERY, WARMUP, DECAY, CLIP = 16, 50, 0.06, 0.01, 1.0


def train(x, y, xh, yh, xd, yd, form, lr, epochs, seed):
    """Best held-out accuracy, dev accuracy at that evaluation, and its step."""
    n, layers, d = x.shape
    rng = np.random.default_rng(seed)
    params = {"w": np.zeros(d if form == "mix" else (layers, d)), "a": np.zeros(layers), "b": np.zeros(1)}
    moments = {k: (np.zeros_like(p), np.zeros_like(p)) for k, p in params.items()}
    steps = epochs * -(-n // BATCH)
    warm = max(1, math.ceil(round(WARMUP * steps, 6)))

    def logits(batch):
        p = params
        if form == "layers":
            return np.einsum("nld,ld->n", batch, p["w"]) + p["b"][0]
        mix = np.exp(p["a"] - p["a"].max())
        mix /= mix.sum()
        return np.einsum("nld,l->nd", batch, mix) @ p["w"] + p["b"][0]

    def grads(batch, g):
        p = params
        if form == "layers":
            return {"w": np.einsum("n,nld->ld", g, batch), "a": np.zeros(layers), "b": np.array([g.sum()])}
        mix = np.exp(p["a"] - p["a"].max())
        mix /= mix.sum()
        mixed = np.einsum("nld,l->nd", batch, mix)
        dmix = np.einsum("n,nld,d->l", g, batch, p["w"])
        return {"w": g @ mixed, "a": mix * (dmix - (mix * dmix).sum()), "b": np.array([g.sum()])}

    best, t = (-1.0, 0.0, 0), 0
    for _ in range(epochs):
        order = rng.permutation(n)
        for i in range(0, n, BATCH):
            idx = np.sort(order[i:i + BATCH])
            batch = x[idx]
            g = (1 / (1 + np.exp(-logits(batch))) - y[idx]) / len(idx)
            gs = grads(batch, g)
            t += 1
            rate = lr * (t / warm if t <= warm else max(0.0, (steps - t) / max(1, steps - warm)))
            norm = np.sqrt(sum((v ** 2).sum() for v in gs.values()))
            scale = min(1.0, CLIP / (norm + 1e-6))
            for k, p in params.items():
                m, v = moments[k]
                m *= 0.9
                m += 0.1 * scale * gs[k]
                v *= 0.999
                v += 0.001 * (scale * gs[k]) ** 2
                if k == "w":
                    p *= 1 - rate * DECAY
                p -= rate * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
            if t % EVAL_EVERY == 0 or t == steps:
                held = float(((logits(xh) > 0) == yh).mean())
                if held > best[0]:
                    best = (held, float(((logits(xd) > 0) == yd).mean()), t)
    return best


def main(argv):
    ap = argparse.ArgumentParser(description="A multi-layer readout trained as qst-tune trains, on qst-eval states.")
    ap.add_argument("train")
    ap.add_argument("dev")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--lrs", default="5e-4")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--heldout", type=int, default=500)
    ap.add_argument("--forms", default="mix,layers")
    ap.add_argument("--inputs", default="raw,standardised")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    forms, inputs = a.forms.split(","), a.inputs.split(",")
    for f in forms:
        if f not in ("mix", "layers"):
            raise SystemExit(f"readout_adam.py: --forms: unknown form {f!r} (mix, layers)")
    for i in inputs:
        if i not in ("raw", "standardised"):
            raise SystemExit(f"readout_adam.py: --inputs: unknown input {i!r} (raw, standardised)")
    lrs = [float(s) for s in a.lrs.split(",")]
    last, _, y = load(a.train)
    dlast, _, yd = load(a.dev)
    if not 0 < a.heldout < len(y):
        raise SystemExit(f"readout_adam.py: --heldout {a.heldout} must leave training examples ({len(y)})")
    k = len(y) - a.heldout
    x, xh, xd = (np.asarray(v, np.float32) for v in (last[:k], last[k:], dlast))
    rows = []
    for inp in inputs:
        if inp == "standardised":
            sets = [v.astype(np.float32) for v in standardise(x, xh, xd)]  # float32 in, the same values back
        else:
            sets = [x, xh, xd]
        for form in forms:
            for lr in lrs:
                runs = [train(sets[0], y[:k], sets[1], y[k:], sets[2], yd, form, lr, a.epochs, s)
                        for s in range(a.seeds)]
                r = {"form": form, "input": inp, "lr": lr, "epochs": a.epochs,
                     "heldout": float(np.mean([q[0] for q in runs])), "dev": float(np.mean([q[1] for q in runs])),
                     "devPerSeed": [q[1] for q in runs], "bestStepPerSeed": [q[2] for q in runs]}
                rows.append(r)
                if not a.json:
                    print(f"{form:6s} {inp:12s} lr {lr:g}: held-out {100 * r['heldout']:5.1f} %  dev {100 * r['dev']:5.2f} %"
                          f"  (per seed {', '.join(f'{100 * q:.1f}' for q in r['devPerSeed'])};"
                          f" best steps {r['bestStepPerSeed']})", flush=True)
    if a.json:
        print(json.dumps({"train": k, "heldout": a.heldout, "dev": len(yd), "seeds": a.seeds, "readouts": rows},
                         indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
