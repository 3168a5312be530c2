#!/usr/bin/env python3
"""Training memory versus model size for QST and LoRA (BENCHMARKS.md §8): the stated formulas, and the
Markdown tables that put them beside the runs Scripts/bench_scale.py measured.

QST: the accounting `qst-init-side --json` prints (Formats/RUNS.md §3; QST_BIN must point at the tools),
taken for the shape's config.json, without the frozen model's weights (file-backed, not anonymous), plus
what the frozen model does allocate: its forward scratch for one layer, 4 n (2d + 2q + 2kv + 2f), and the
decoded NF4 scales (below).
LoRA (r 8 on all seven projections, AdamW), bytes for a micro-batch of n = batch × seq tokens:
  16 P                               P = L · r · Σ(in + out) over q, k, v, o, gate, up, down: value, gradient, 2 moments
+ 4 (L + 1) n d                      every layer's input, kept for backward
+ T · 4 (n (4d + 2q + 2kv + 3f + 2) + batch · heads · seq² + 7 n r)
                                     a layer's tape (norms, q/k/v, attention output, gate/up/act, probabilities,
                                     LoRA products); T = L, or 1 with gradient checkpointing
+ 4 n (2d + 2q + 2kv + 3f) + 4 · 2^18 + 9 n · max(d, f)
                                     backward scratch shared by the layers, dequantization tile, dropout copies
+ 4 n (3d + 1) + 4 (128 V + 256 d + 4096 d)
                                     final norm and its gradient, chunked cross-entropy through the frozen head
+ 4 L (2d² + 2d·kv + 3d·f) / 64      the frozen blocks' NF4 scales decoded to F32 (LoRA's blocks keep all of them;
                                     QST keeps all without a resident budget, one layer at a time with one)
"""
import json
import os
import subprocess
import tempfile

# name: layers, hidden, intermediate, heads, kv heads, vocab (Scripts/make-synthetic / qst-synthetic --list)
SHAPES = {
    "llama-2-7b": (32, 4096, 11008, 32, 32, 32000),
    "llama-3-8b": (32, 4096, 14336, 32, 8, 128256),
    "llama-2-13b": (40, 5120, 13824, 40, 40, 32000),
    "llama-2-70b": (80, 8192, 28672, 64, 8, 32000),
}
NF4_BITS = 4.127          # NF4 block 64 with double-quantized absmax
GiB = 2 ** 30


def nf4_container_bytes(shape):
    L, d, f, H, KV, V = SHAPES[shape]
    kv = KV * d // H
    linear = L * (2 * d * d + 2 * d * kv + 3 * d * f)
    return linear * NF4_BITS / 8 + 2 * 2 * V * d        # projections in NF4, embeddings and head in BF16


def scale_bytes(shape, layers):
    """Decoded NF4 block scales (F32, one per 64 weights) of `layers` layers: the engine keeps them for every
    layer without a resident budget (and LoRA always, its blocks hold them), for one layer at a time with one."""
    L, d, f, H, KV, V = SHAPES[shape]
    kv = KV * d // H
    return 4 * layers * (2 * d * d + 2 * d * kv + 3 * d * f) // 64


def formula(shape, method, batch, seq=256, r=16, budget=False):
    """Parts in bytes of a run's anonymous memory (`budget`: a --resident-budget smaller than the container)."""
    if method == "qst":
        parts = dict(qst_bytes(shape, batch, seq, r))
        parts["frozen model: decoded NF4 scales"] = scale_bytes(shape, 1 if budget else SHAPES[shape][0])
        L, d, f, H, KV, V = SHAPES[shape]
        # The engine's forward scratch: residual stream, normed input, q/k/v, attention output, gate and up.
        parts["frozen model: one layer's activations"] = 4 * batch * seq * (2 * d + 2 * d + 2 * (KV * d // H) + 2 * f)
        return parts
    return lora_bytes(shape, batch, seq, method == "lora-ckpt")


def lora_params(shape, r=8):
    L, d, f, H, KV, V = SHAPES[shape]
    kv = KV * d // H
    return L * r * ((d + d) + (d + kv) * 2 + (d + d) + (d + f) * 2 + (f + d))


def lora_bytes(shape, batch, seq, checkpointing=False, r=8):
    """Parts of LoRA training memory in bytes (the formula in the module docstring)."""
    L, d, f, H, KV, V = SHAPES[shape]
    q, kv, n = d, KV * d // H, batch * seq
    P = lora_params(shape, r)
    tape = 4 * (n * (4 * d + 2 * q + 2 * kv + 3 * f + 2) + batch * H * seq * seq + 7 * n * r)
    return {
        "parameters, gradients, AdamW moments": 16 * P,
        "layer inputs": 4 * (L + 1) * n * d,
        "layer tapes": (1 if checkpointing else L) * tape,
        "backward scratch": 4 * n * (2 * d + 2 * q + 2 * kv + 3 * f) + 4 * 2 ** 18 + 9 * n * max(d, f),
        "final norm + chunked cross-entropy": 4 * n * (3 * d + 1) + 4 * (128 * V + 256 * d + 4096 * d),
        "frozen model: decoded NF4 scales": scale_bytes(shape, L),
    }


def config_json(shape):
    L, d, f, H, KV, V = SHAPES[shape]
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": d, "num_hidden_layers": L,
            "num_attention_heads": H, "num_key_value_heads": KV, "intermediate_size": f, "vocab_size": V,
            "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 4096, "hidden_act": "silu"}


_qst_cache = {}


def qst_bytes(shape, batch, seq, r=16):
    """Parts of QST training memory in bytes, from `qst-init-side --json` (without the frozen model)."""
    key = (shape, batch, seq, r)
    if key not in _qst_cache:
        with tempfile.TemporaryDirectory() as t:
            cfg = os.path.join(t, "config.json")
            json.dump(config_json(shape), open(cfg, "w"))
            out = subprocess.run([os.path.join(os.environ["QST_BIN"], "qst-init-side"), cfg, "-o", os.path.join(t, "side"),
                                  "--r", str(r), "--batch", str(batch), "--seq-len", str(seq), "--json"],
                                 check=True, capture_output=True, text=True).stdout
        m = json.loads(out)["memory"]
        _qst_cache[key] = {
            "parameters, gradients, AdamW moments": m["parameters"] + m["gradients"] + m["optimizerState"],
            "downsampler tapes": m["downsamplerTapes"],
            "side stream + head": m["sideStream"],
            "one side block's activations": m["blockWorkspace"],
            "chunked cross-entropy": m["crossEntropy"],
        }
    return _qst_cache[key]


def linear_in_batch(shape, method, budget=False):
    """Formula bytes as a function of the batch (every part is constant or proportional to the batch)."""
    one, two = (sum(formula(shape, method, b, budget=budget).values()) for b in (1, 2))
    return lambda b: one + (b - 1) * (two - one)


def gib(b):
    return f"{b / GiB:.2f}"


def dropping(run):
    """Whether the run's resident budget made the engine drop each layer's pages (and scales) after use."""
    return bool(run["budgetMB"]) and run["containerGB"] * 1e9 > run["budgetMB"] * 2 ** 20


def run_formula(run):
    return sum(formula(run["shape"], run["method"], run["batch"], run["seq"], run.get("r") or 16, dropping(run)).values())


def measured(runs, shape, method, r=None, batch=1, seq=256):
    """The lowest peak anonymous memory among successful runs of that kind (QST: the run with a resident
    budget, which keeps one layer's scales; LoRA keeps all of them either way)."""
    ok = [x for x in runs if x["shape"] == shape and x["method"] == method and x["batch"] == batch and x["seq"] == seq
          and x.get("exitCode") == 0 and (r is None or x.get("r") == r)]
    return min(ok, key=lambda x: x["peakAnonMiB"]) if ok else None


def markdown(runs, ram):
    out = ["Measured runs (one line per run; s/step of each optimizer step, the first faults the weights in; "
           "tok/s from the fastest later step; load average of the machine at start → end; formula: "
           "Scripts/scale_memory.py for the run's method, batch and budget):", "",
           "| shape | method | batch × tokens | resident budget | s/step | train tok/s | peak RSS | peak anonymous | formula | load | date |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for x in runs:
        m = x["method"] + (f" r {x['r']}" if x["method"] == "qst" else "")
        budget = f"{x['budgetMB']:,} MB" if x["budgetMB"] else "none"
        if x.get("exitCode") != 0:
            timing = "failed: " + " ".join(x.get("error", []))[:80] + " |"
        else:
            timing = f"{' / '.join(f'{t:.1f}' for t in x['secondsPerStep'])} | {x['trainTokensPerSecond']}"
        out.append(f"| {x['shape']} | {m} | {x['batch']} × {x['seq']} | {budget} | {timing} | {x['peakRSSMiB']:,} MiB | "
                   f"{x['peakAnonMiB']:,} MiB | {run_formula(x) / 2 ** 20:,.0f} MiB | "
                   f"{x['loadStart'][0]:.1f} → {x['loadEnd'][0]:.1f} | {x['date']} |")

    out += ["", "Memory versus model size at batch 1 × 256: anonymous memory in GiB, measured peak / formula, or "
            "*formula* alone in italics where that shape and method were not run. QST with a resident budget (one "
            "layer's NF4 scales decoded at a time), LoRA r 8 on all projections; the frozen NF4 weights themselves "
            "are file-backed (page cache) in every column:", "",
            "| shape | NF4 container | QST r 16 | QST r 32 | LoRA r 8 | LoRA r 8 + checkpointing | LoRA ÷ QST r 16 (formula) |",
            "|---|---|---|---|---|---|---|"]
    for shape in SHAPES:
        cells = []
        q16 = sum(formula(shape, "qst", 1, r=16, budget=True).values())
        lo = sum(formula(shape, "lora", 1).values())
        for method, r, f in (("qst", 16, q16), ("qst", 32, sum(formula(shape, "qst", 1, r=32, budget=True).values())),
                             ("lora", None, lo), ("lora-ckpt", None, sum(formula(shape, "lora-ckpt", 1).values()))):
            run = measured(runs, shape, method, r)
            if run:   # the formula of that run (a QST run without a budget keeps every layer's scales: †)
                cells.append(f"{run['peakAnonMiB'] / 1024:.2f} / {gib(run_formula(run))}"
                             + ("†" if method == "qst" and not dropping(run) else ""))
            else:
                cells.append(f"*{gib(f)}*")
        out.append(f"| {shape} | {nf4_container_bytes(shape) / GiB:.1f} GiB | " + " | ".join(cells) + f" | {lo / q16:.1f}× |")
    out += ["| paper, Llama-2-70B (GPU, its setting) | | QST 109 GB | | QLoRA 246 GB | | 2.3× |"]
    footnote = ("† measured without a resident budget: all layers' NF4 scales decoded (formula likewise); "
                "with a budget they would be one layer's.")
    w70 = nf4_container_bytes("llama-2-70b")
    b16 = [linear_in_batch("llama-2-70b", m, budget=(m == "qst"))(16) + w70 for m in ("qst", "lora", "lora-ckpt")]
    q32 = sum(formula("llama-2-70b", "qst", 16, r=32, budget=True).values()) + w70
    out += [f"| *Llama-2-70B at batch 16 × 256 with the NF4 weights counted (formula)* | {w70 / GiB:.1f} GiB | "
            f"*{gib(b16[0])}* | *{gib(q32)}* | *{gib(b16[1])}* | *{gib(b16[2])}* | {b16[1] / b16[0]:.1f}× |", "", footnote]

    out += ["", "Where the bytes go at batch 1 × 256 (formula, GiB):", "",
            "| part | 7B QST r 16 | 7B LoRA | 7B LoRA + ckpt | 70B QST r 16 | 70B QST r 32 | 70B LoRA | 70B LoRA + ckpt |",
            "|---|---|---|---|---|---|---|---|"]
    cols = [formula("llama-2-7b", "qst", 1, budget=True), formula("llama-2-7b", "lora", 1),
            formula("llama-2-7b", "lora-ckpt", 1), formula("llama-2-70b", "qst", 1, budget=True),
            formula("llama-2-70b", "qst", 1, r=32, budget=True), formula("llama-2-70b", "lora", 1),
            formula("llama-2-70b", "lora-ckpt", 1)]
    parts = []
    for c in cols:
        parts += [p for p in c if p not in parts]
    for p in parts:
        out.append(f"| {p} | " + " | ".join(gib(c[p]) if p in c else "–" for c in cols) + " |")
    out.append("| **total** | " + " | ".join(f"**{gib(sum(c.values()))}**" for c in cols) + " |")

    fit = float(os.environ.get("QST_SCALE_FIT_GIB", "16"))
    out += ["", f"Largest batch (× 256 tokens) that fits, where *fits* = peak anonymous memory ≤ {fit:g} GiB "
            f"(the rest of the {ram / GiB:.0f} GiB machine is left to the page cache for the weights): the batches "
            "measured (one step each; no budget), then the largest batch under the limit by the formula:", "",
            "| shape | method | measured (batch: peak anonymous GiB / formula GiB) | largest batch by formula |", "|---|---|---|---|"]
    for shape in SHAPES:
        for method in ("qst", "lora", "lora-ckpt"):
            pts = sorted(((x["batch"], x) for x in runs if x["shape"] == shape and x["method"] == method
                          and x["seq"] == 256 and not dropping(x) and (method != "qst" or x.get("r") == 16)),
                         key=lambda t: t[0])
            f = linear_in_batch(shape, method, budget=nf4_container_bytes(shape) > 0.8 * ram)
            seen, cells = set(), []
            for b, x in pts:
                if b in seen:
                    continue
                seen.add(b)
                val = f"{x['peakAnonMiB'] / 1024:.2f}" if x.get("exitCode") == 0 else "failed"
                cells.append(f"{b}: {val} / {gib(f(b))}")
            best = int((fit * GiB - f(1)) // (f(2) - f(1))) + 1 if f(1) <= fit * GiB else 0
            if cells or shape in ("llama-2-7b", "llama-2-70b"):
                out.append(f"| {shape} | {method} | {', '.join(cells) or '–'} | "
                           f"{best if best else f'none (batch 1 needs {gib(f(1))} GiB)'} |")
    return "\n".join(out)


if __name__ == "__main__":
    import sys
    runs = [json.loads(l) for l in open(sys.argv[1])] if len(sys.argv) > 1 else []
    print(markdown(runs, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")))
