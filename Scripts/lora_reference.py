#!/usr/bin/env python3
"""Float64 reference for LoRA training gradients on a LLaMA-family folder (issue 14).

    lora_reference.py MODEL_DIR ADAPTER_DIR CASE.json OUT.safetensors

MODEL_DIR: a Hugging Face folder (the tiny models of Scripts/make-tiny-models). ADAPTER_DIR: a PEFT
LoRA adapter (adapter_config.json with r, lora_alpha, target_modules; adapter_model.safetensors
with base_model.model.model.layers.{i}.{self_attn|mlp}.{target}.lora_A.weight [r, in] and
lora_B.weight [out, r]). CASE.json: {"sequences": [[ids...], ...], "labels": [[ids or -100...], ...]}.

The model is Scripts/reference_forward.py's float64 forward with every targeted weight replaced by
W + (lora_alpha / r) · B · A (LoRA without dropout is exactly that). The loss is the mean cross
entropy over all labelled positions of all sequences (each sequence run on its own, no padding).
Gradients of every lora_A / lora_B element come from complex-step differentiation,
dL/dp = Im L(p + i·h) / h with h = 1e-30: every operation of the forward is analytic, so this is
the exact derivative to float64 rounding (no cancellation, unlike finite differences), and it is
independent of any hand-written backward. A perturbed forward starts at the layer of the perturbed module,
from that layer's unperturbed input (earlier layers do not change). Output: "loss" (F64 [1]) and, for each adapter tensor,
the same name with its float64 gradient.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qst_py.venv import ensure_venv  # noqa: E402

ensure_venv(("numpy",))

import numpy as np  # noqa: E402

from qst_py import safetensors_np as st  # noqa: E402
from reference_forward import ReferenceModel  # noqa: E402

IGNORE = -100
PREFIX = "base_model.model."
STEP = 1e-30


def mean_cross_entropy(model, sequences, labels, starts=None) -> complex:
    """`starts`: per sequence, (layer, input of that layer) to begin the forward at (ReferenceModel.forward)."""
    total, count = 0.0, 0
    for b, (ids, lab) in enumerate(zip(sequences, labels)):
        start = starts[b] if starts is not None else None
        logits = model.forward(np.asarray(ids)[None], start=start)[0]  # [T, V], complex when perturbed
        m = np.max(logits.real, axis=-1, keepdims=True)
        lse = m[:, 0] + np.log(np.sum(np.exp(logits - m), axis=-1))
        for t, y in enumerate(lab):
            if y != IGNORE:
                total = total + (lse[t] - logits[t, y])
                count += 1
    if count == 0:
        raise ValueError("no labelled position")
    return total / count


def main(argv) -> int:
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    model_dir, adapter_dir, case_path, out_path = argv
    with open(os.path.join(adapter_dir, "adapter_config.json")) as f:
        cfg = json.load(f)
    with open(case_path) as f:
        case = json.load(f)
    scale = float(cfg["lora_alpha"]) / int(cfg["r"])
    adapter = {k: np.asarray(v, dtype=np.float64) for k, v in st.load(os.path.join(adapter_dir, "adapter_model.safetensors")).items()}
    model = ReferenceModel(model_dir)
    base = {k: v.copy() for k, v in model.w.items()}
    pairs = {}
    for name in adapter:
        if not name.startswith(PREFIX) or not (name.endswith(".lora_A.weight") or name.endswith(".lora_B.weight")):
            raise ValueError(f"{adapter_dir}: unexpected tensor {name}")
        module = name[len(PREFIX):].rsplit(".lora_", 1)[0]
        if module + ".weight" not in base:
            raise ValueError(f"{adapter_dir}: {name} targets {module}, not in {model_dir}")
        pairs.setdefault(module, {})[name.rsplit(".", 2)[-2]] = name

    # Every targeted weight merged once in float64; a perturbation makes only its own module complex.
    merged = {m: base[m + ".weight"] + scale * (adapter[p["lora_B"]] @ adapter[p["lora_A"]]) for m, p in pairs.items()}
    for module, weight in merged.items():
        model.w[module + ".weight"] = weight

    def perturb(module, name, index):
        p = pairs[module]
        a, b = adapter[p["lora_A"]].astype(np.complex128), adapter[p["lora_B"]].astype(np.complex128)
        (a if name == p["lora_A"] else b).reshape(-1)[index] += 1j * STEP
        model.w[module + ".weight"] = base[module + ".weight"] + scale * (b @ a)

    seqs, labels = case["sequences"], case["labels"]
    loss = mean_cross_entropy(model, seqs, labels)
    out = {"loss": np.array([loss.real], dtype=np.float64)}
    # Layer l's weights change nothing before layer l: each perturbed forward starts there, from the
    # unperturbed input of that layer.
    hidden = [model.forward(np.asarray(ids)[None], return_hidden=True)[1] for ids in seqs]
    owner = {p[k]: m for m, p in pairs.items() for k in ("lora_A", "lora_B")}
    for name, value in adapter.items():
        module = owner[name]
        layer = int(module.split(".")[2]) if module.startswith("model.layers.") else None
        starts = [(layer, h[layer]) for h in hidden] if layer is not None else None
        grad = np.zeros(value.size, dtype=np.float64)
        for i in range(value.size):
            perturb(module, name, i)
            grad[i] = mean_cross_entropy(model, seqs, labels, starts).imag / STEP
        out[name] = grad.reshape(value.shape)
        model.w[module + ".weight"] = merged[module]
    st.save(out_path, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
