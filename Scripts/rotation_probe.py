#!/usr/bin/env python3
"""Does rotating the residual stream make SmolLM2 easier to quantize to NF4? (issue 17, BENCHMARKS.md §38)

QuaRot / QuIP# rotate a LLaMA model's residual stream by an orthogonal Q: every RMSNorm weight is folded into
the linears that read its output (so the norms become weightless and commute with Q), the linears that read
the stream take W·diag(γ)·Q, the ones that write it (o_proj, down_proj) Qᵀ·W, the embedding E·Q and the head
E·diag(γ_final)·Q (untied). The rotated model computes the same function, its files are plain LLaMA weights
that any NF4 reader decodes, and the weights look more Gaussian, which NF4's grid is made for.

For each variant this writes the rotated HF folder, quantizes it with `qst-quantize` (plain NF4, and the
default GPTQ with --gptq), and scores it with `qst-eval compare` against the *original* F32 folder on held-out
text (the KL of the same function), one table at the end:

  identity   the norms folded, no rotation (what folding alone costs)
  random     Q from the QR of a Gaussian matrix (seeded)
  hadamard   Q = (random 9×9 orthogonal) ⊗ (Sylvester Hadamard 64 / 8), random signs (576 = 9 · 64)

  Scripts/rotation_probe.py F32_DIR CALIB.txt EVAL.txt OUT_DIR [--gptq] [--variants identity,random,hadamard]

QST_BIN (default .build/release) holds the tools. Llama-family folders with RMSNorm only.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qst_py.venv import ensure_venv  # noqa: E402

ensure_venv(("numpy",))
import numpy as np  # noqa: E402

from qst_py import safetensors_np as st  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rotation(kind, d, seed):
    rng = np.random.default_rng(seed)
    if kind == "identity":
        return np.eye(d)
    if kind == "hadamard":
        if d % 64:
            raise SystemExit(f"rotation_probe: hidden size {d} is not a multiple of 64")
        h = np.array([[1.0]])
        while h.shape[0] < 64:
            h = np.block([[h, h], [h, -h]])
        g, _ = np.linalg.qr(rng.standard_normal((d // 64, d // 64)))
        return np.kron(g, h / 8.0) * rng.choice([-1.0, 1.0], size=d)[:, None]
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))[None, :]


def rotate(src, dst, kind, seed):
    """Writes the rotated, norm-folded copy of the HF folder `src` to `dst`."""
    cfg = json.load(open(os.path.join(src, "config.json")))
    if cfg.get("model_type") not in ("llama", "mistral", "qwen2"):
        raise SystemExit(f"rotation_probe: {src}: model_type {cfg.get('model_type')!r} has no RMSNorm-only stream")
    t = {k: np.asarray(v, dtype=np.float64) for k, v in st.load(os.path.join(src, "model.safetensors")).items()}
    d = cfg["hidden_size"]
    q = rotation(kind, d, seed)
    e = t["model.embed_tokens.weight"]
    out = {"model.embed_tokens.weight": e @ q,
           "lm_head.weight": (t.get("lm_head.weight", e) * t["model.norm.weight"][None, :]) @ q,
           "model.norm.weight": np.ones(d)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        for norm, readers in (("input_layernorm", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
                              ("post_attention_layernorm", ("mlp.gate_proj", "mlp.up_proj"))):
            g = t[p + norm + ".weight"]
            for n in readers:
                out[p + n + ".weight"] = (t[p + n + ".weight"] * g[None, :]) @ q
            out[p + norm + ".weight"] = np.ones(d)
        for n in ("self_attn.o_proj", "mlp.down_proj"):
            out[p + n + ".weight"] = q.T @ t[p + n + ".weight"]
    for k in t:
        if k not in out and k != "lm_head.weight":
            out[k] = t[k]  # biases of q/k/v (Qwen2) are on the heads' side of the rotation
    os.makedirs(dst, exist_ok=True)
    st.save(os.path.join(dst, "model.safetensors"), {k: v.astype(np.float32) for k, v in out.items()},
            {"format": "pt"})
    cfg["tie_word_embeddings"] = False
    with open(os.path.join(dst, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    for name in os.listdir(src):
        if name not in ("config.json", "model.safetensors"):
            shutil.copy(os.path.join(src, name), dst)


def run(cmd):
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"rotation_probe: {' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("f32")
    ap.add_argument("calib")
    ap.add_argument("eval")
    ap.add_argument("out")
    ap.add_argument("--gptq", action="store_true", help="also the default GPTQ (16,384 calibration tokens)")
    ap.add_argument("--variants", default="identity,random,hadamard")
    ap.add_argument("--eval-tokens", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    binq = os.environ.get("QST_BIN") or os.path.join(ROOT, ".build", "release")
    os.makedirs(a.out, exist_ok=True)
    methods = [("nf4", [])] + ([("gptq", ["--calibrate", a.calib, "--calibrate-tokens", "16384",
                                          "--calibrate-ctx", "512", "--method", "gptq"])] if a.gptq else [])
    rows = []
    for kind in ["original"] + a.variants.split(","):
        folder = a.f32
        if kind != "original":
            folder = os.path.join(a.out, kind)
            rotate(a.f32, folder, kind, a.seed)
            check = run([os.path.join(binq, "qst-eval"), "compare", folder, "--against", a.f32, "--text", a.eval,
                         "--ctx", "512", "--max-tokens", "1024", "--json"])
            print(f"[probe] {kind}: F32 rotated against F32, KL {check['meanKL']:.2e}", file=sys.stderr, flush=True)
        for method, args in methods:
            qst4 = os.path.join(a.out, f"{kind}-{method}.qst4")
            q = run([os.path.join(binq, "qst-quantize"), folder, qst4, "--json", *args])
            c = run([os.path.join(binq, "qst-eval"), "compare", qst4, "--against", a.f32, "--text", a.eval,
                     "--ctx", "512", "--max-tokens", str(a.eval_tokens), "--json"])
            rows.append({"variant": kind, "method": method, "bpw": q["bitsPerWeightQuantized"], "kl": c["meanKL"],
                         "top1": c["top1Agreement"], "ppl": c["perplexity"], "positions": c["positions"]})
            print(f"[probe] {kind} {method}: KL {c['meanKL']:.4f}", file=sys.stderr, flush=True)
            os.remove(qst4)
        if kind != "original":
            shutil.rmtree(folder)
    print("| residual stream | NF4 method | bits/weight (linears) | mean KL from F32 | top-1 | perplexity |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['method']} | {r['bpw']:.3f} | {r['kl']:.4f} | {100 * r['top1']:.1f} % "
              f"| {r['ppl']:.3f} |")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
