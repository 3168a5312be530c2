#!/usr/bin/env python3
"""What rounding x and the NF4 grid in an integer GEMM costs SmolLM2's logits (BENCHMARKS.md §13, session 6).

Runs the float64 reference forward (reference_forward.py) with NF4 weights (block 64, nearest code,
no double quantization) and replaces chosen projections' products by products of rounded operands:

  x:  "exact", "bf16", ("i", L, G)    round to L levels per G elements (scale max|x| / L),
      ("top1", L, G)                 the same with each group's largest |x| kept exact (an F32 side product)
  w:  "exact", "bf16", L             NF4 values rounded to round(L * value) / L (times absmax)

and prints the logits' relative Frobenius error against exact products on the same NF4 weights, for
RealModelTests' two prompts and a wiki.test.raw chunk (T tokens, default 128), and the wiki
perplexity ratio.

  Scripts/gemm_rounding_sim.py '[("int8/32 x, 127 w", {"*": (("i",127,32),127)}),
                                ("int8/32 x on down only", {"down_proj": (("i",127,32),"exact")})]'
"""
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qst_py.venv import ensure_venv  # noqa: E402

ensure_venv(("numpy", "tokenizers"))
import numpy as np  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

from reference_forward import LlamaReferenceModel  # noqa: E402
from nf4_reference import NF4_CODE  # noqa: E402

PROJ = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def bf16(a):
    f = a.astype(np.float32).view(np.uint32).astype(np.uint64)
    f = ((f + 0x7FFF + ((f >> 16) & 1)) >> 16) << 16
    return f.astype(np.uint32).view(np.float32).astype(np.float64)


def round_x(x, mode):
    if mode == "exact":
        return x
    if mode == "bf16":
        return bf16(x)
    kind, levels, g = mode
    s = x.reshape(*x.shape[:-1], -1, g).copy()
    if kind == "top1":
        idx = np.abs(s).argmax(-1)[..., None]
        top = np.take_along_axis(s, idx, -1)
        np.put_along_axis(s, idx, 0.0, -1)
    mx = np.abs(s).max(-1, keepdims=True)
    sc = np.where(mx > 0, mx / levels, 1.0)
    q = np.round(s / sc) * sc
    if kind == "top1":
        np.put_along_axis(q, idx, top, -1)
    return q.reshape(x.shape)


class RoundedModel(LlamaReferenceModel):
    def __init__(self, folder, cfg):
        super().__init__(folder, cfg)
        nf4 = np.asarray(NF4_CODE, dtype=np.float64)
        self.nf4, self.codes, self.amax, self.mode = nf4, {}, {}, {}
        for k in list(self.w):
            if k.endswith("proj.weight"):
                b = self.w[k].reshape(-1, 64)
                a = np.abs(b).max(1, keepdims=True).astype(np.float32).astype(np.float64)
                c = np.abs(b[..., None] / np.where(a > 0, a, 1)[..., None] - nf4).argmin(-1)
                self.codes[k], self.amax[k] = c, a
                self.w[k] = (nf4[c] * a).reshape(self.w[k].shape)

    def weight(self, k, mode):
        if mode == "exact":
            return self.w[k]
        if mode == "bf16":
            return bf16(self.w[k])
        return (np.round(self.nf4[self.codes[k]] * mode) / mode * self.amax[k]).reshape(self.w[k].shape)

    def _linear(self, x, name):
        xm, wm = self.mode.get(name.split(".")[-1], ("exact", "exact"))
        return round_x(x, xm) @ self.weight(name + ".weight", wm).T


def main():
    folder = os.environ.get("QST_MODEL_F32", os.path.expanduser("~/.cache/qst/models/SmolLM2-135M-Instruct-f32"))
    data = os.environ.get("QST_DATA", "/work/shared/data")
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    seqs = [tok.encode(p).ids for p in ["The capital of France is", "def fibonacci(n):\n    "]]
    with open(os.path.join(data, "text", "wiki.test.raw")) as f:
        wiki = tok.encode(f.read()[:20000]).ids[: int(os.environ.get("T", "128"))]
    m = RoundedModel(folder, cfg)

    def run(mode):
        m.mode = mode
        return np.concatenate([m.forward(np.array([s]))[0] for s in seqs]), m.forward(np.array([wiki]))[0]

    def nll(logits):
        lg, t = logits[:-1], np.array(wiki[1:])
        mx = lg.max(-1, keepdims=True)
        return float(np.mean(np.log(np.exp(lg - mx).sum(-1)) + mx[:, 0] - lg[np.arange(len(t)), t]))

    def rel(a, b):
        return float(np.linalg.norm(a - b) / np.linalg.norm(b))

    base = run({})
    for label, spec in eval(sys.argv[1]):
        r = run({p: spec.get(p, spec.get("*", ("exact", "exact"))) for p in PROJ})
        print(f"{label:40s} prompts {rel(r[0], base[0]):.3e}  wiki {rel(r[1], base[1]):.3e}  "
              f"ppl x{math.exp(nll(r[1]) - nll(base[1])):.5f}", flush=True)


if __name__ == "__main__":
    main()
