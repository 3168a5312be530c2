#!/usr/bin/env python3
"""Independent float64 NumPy logits of a tuned model: the frozen base dequantized from its .qst4
container plus an exported QST adapter (Formats/SIDE.md, Formats/QST4.md). For tests of QST's Swift
inference (TunedModel) and of qst-export.

Built only from independent pieces: Scripts/qst4_reader.py (the container reader written from the spec
alone) dequantizes the base; Scripts/reference_forward.py runs it and gives the hidden states after every
layer; Scripts/side_reference.py supplies the side network's downsampler and blocks (written from the
spec and the reference PyTorch implementation). Evaluation mode: no dropout.

    tuned_reference.py BASE.qst4 ADAPTER_DIR --ids 1,2,3 [--ids 4,5] --out logits.npy [--base-out base.npy]
    tuned_reference.py TUNED.qst4 --ids 1,2,3 --out logits.npy        (side network from sections.side)

ADAPTER_DIR holds adapter_model.safetensors + adapter_config.json (qst-export), or side.safetensors +
side_config.json. Without it, the side network is read from the container's `sections.side`
(Formats/QST4.md §9) with this script's own code: ranges, CRC-32C and dtypes checked. Sequences of different lengths are right-padded; logits at padded positions are 0.
--base-out also saves the base model's own logits (to show the side network changes them).
"""
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qst_py.venv import ensure_venv  # noqa: E402

ensure_venv(("numpy",))

import argparse  # noqa: E402

import numpy as np  # noqa: E402

import side_reference as side  # noqa: E402
from qst4_reader import QST4, crc32c  # noqa: E402
from qst_py import safetensors_np as st  # noqa: E402
from reference_forward import ReferenceModel, rms_norm  # noqa: E402


def load_adapter(folder):
    """(side config dict, float64 tensors) from an adapter or side folder. Tensors come in the reference
    implementation's convention: an OPT side folder (QST's own convention) has its lm_head_z negated
    (Formats/SIDE.md §9); exported adapters already hold the reference's values."""
    if os.path.exists(os.path.join(folder, "adapter_config.json")):
        with open(os.path.join(folder, "adapter_config.json")) as f:
            meta = json.load(f)
        if meta.get("format") != "qst-adapter-1":
            raise SystemExit(f"{folder}/adapter_config.json: format {meta.get('format')!r} is not qst-adapter-1")
        cfg, weights = meta["side"], os.path.join(folder, "adapter_model.safetensors")
    else:
        with open(os.path.join(folder, "side_config.json")) as f:
            cfg = json.load(f)
        weights = os.path.join(folder, "side.safetensors")
    p = {k: v.astype(np.float64) for k, v in st.load(weights).items()}
    if side.is_opt(cfg) and not os.path.exists(os.path.join(folder, "adapter_config.json")):
        p["lm_head_z"] = -p["lm_head_z"]
    return cfg, p


_SECTION_DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2")}


def attached_side(r):
    """(side config, float64 tensors) from sections.side of an opened QST4 (Formats/QST4.md §9)."""
    sec = r.header.get("sections", {}).get("side")
    if sec is None:
        raise SystemExit(f"{r.path}: no sections.side (give an adapter folder)")
    if sec.get("format") != "qst-adapter-1":
        raise SystemExit(f"{r.path}: sections.side.format {sec.get('format')!r} is not qst-adapter-1")
    data = sec["data"]
    if data["offset"] % r.alignment or data["offset"] + data["length"] > r.header_offset:
        raise SystemExit(f"{r.path}: sections.side.data is not aligned or runs into the header")
    raw = np.memmap(r.path, dtype=np.uint8, mode="r")
    out = {}
    for t in sec["tensors"]:
        off, n = t["offset"], t["length"]
        if off % 64 or off < data["offset"] or off + n > data["offset"] + data["length"]:
            raise SystemExit(f"{r.path}: sections.side tensor {t['name']}: range outside sections.side.data")
        blob = bytes(raw[off:off + n])
        if crc32c(blob) != t["crc32c"]:
            raise SystemExit(f"{r.path}: sections.side tensor {t['name']}: crc32c mismatch")
        a = np.frombuffer(blob, dtype=_SECTION_DTYPES[t["dtype"]])
        if t["dtype"] == "BF16":
            a = (a.astype(np.uint32) << 16).view(np.float32)
        out[t["name"]] = a.astype(np.float64).reshape(t["shape"])
    return sec["adapter"]["side"], out


def dequantized_base(container):
    """A ReferenceModel over the container's tensors, every one decoded to float32 by qst4_reader."""
    r = QST4(container)
    tmp = tempfile.mkdtemp(prefix="qst-tuned-ref-")
    try:
        with open(os.path.join(tmp, "config.json"), "wb") as f:
            f.write(r.file("config.json"))
        st.save(os.path.join(tmp, "model.safetensors"), {n: r.tensor(n) for n in r.tensor_names()}, {"format": "pt"})
        return ReferenceModel(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def tuned_logits(model, cfg, p, ids, mask):
    """[B, T, V] float64 logits of base + side network (Formats/SIDE.md §2)."""
    base = cfg["base"]
    for key, have in (("hiddenSize", model.hidden), ("layerCount", model.n_layers), ("attentionHeads", model.n_heads),
                      ("keyValueHeads", model.n_kv)):
        if base[key] != have:
            raise SystemExit(f"adapter was built for {key} {base[key]}, the base has {have}")
    base_logits, hidden = model.forward(ids, mask, return_hidden=True)
    if side.is_opt(cfg):
        return opt_tuned_logits(model, cfg, p, mask, hidden), base_logits
    B, T = ids.shape
    lengths = mask.sum(1).astype(int)
    L = base["layerCount"]
    s = side.downsample(p, 0, hidden[0], cfg)
    for i in range(L):
        z = side.sigmoid(p[f"model.z.{i}"])
        s = side.block(p, i, (1 - z) * side.downsample(p, i, hidden[i + 1], cfg) + z * s, cfg, lengths, T)
    final = rms_norm(hidden[L], model.w["model.norm.weight"], model.eps)
    up = side.rms_norm(s, p["model.norm_qst.weight"], base["rmsNormEps"]) @ p["upsample.weight"].T + p["upsample.bias"]
    zh = side.sigmoid(p["lm_head_z"])
    logits = side.head_mix(cfg, 1 - zh, up, final) @ model.lm_head.T
    return np.where(mask[:, :, None], logits, 0.0), base_logits


def opt_tuned_logits(model, cfg, p, mask, hidden):
    """The reference QSTOPTForCausalLM head (modeling_opt_qst.py): side stream through OPT blocks, its
    final_layer_norm_qst when the base norms before its layers, then sigma(z)*up + (1 - sigma(z))*h with
    the exported (reference-convention) lm_head_z; h = project_out(final_layer_norm(h_L))."""
    L, T = cfg["base"]["layerCount"], hidden[0].shape[1]
    lengths = mask.sum(1).astype(int)
    s = side.downsample(p, 0, hidden[0], cfg)
    for i in range(L):
        z = side.sigmoid(p[f"model.decoder.z.{i}"])
        s = side.opt_block(p, i, (1 - z) * side.downsample(p, i, hidden[i + 1], cfg) + z * s, cfg, lengths, T)
    if cfg["base"].get("layerNormBefore", True):
        s = side.opt_layer_norm(p, "model.decoder.final_layer_norm_qst", s)
    up = s @ p["upsample.weight"].T + p["upsample.bias"]
    z = side.sigmoid(p["lm_head_z"])
    logits = side.head_mix(cfg, z, up, model.head_input(hidden[L])) @ model.lm_head.T
    return np.where(mask[:, :, None], logits, 0.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("container")
    ap.add_argument("adapter", nargs="?")
    ap.add_argument("--ids", action="append", required=True, help="comma-separated token ids; repeat for a batch")
    ap.add_argument("--out", required=True)
    ap.add_argument("--base-out")
    a = ap.parse_args()
    seqs = [[int(t) for t in s.split(",") if t.strip()] for s in a.ids]
    T = max(len(s) for s in seqs)
    ids = np.zeros((len(seqs), T), dtype=np.int64)
    mask = np.zeros((len(seqs), T), dtype=bool)
    for b, s in enumerate(seqs):
        ids[b, :len(s)] = s
        mask[b, :len(s)] = True
    cfg, p = load_adapter(a.adapter) if a.adapter else attached_side(QST4(a.container))
    model = dequantized_base(a.container)
    logits, base_logits = tuned_logits(model, cfg, p, ids, mask)
    np.save(a.out, logits)
    if a.base_out:
        np.save(a.base_out, base_logits)


if __name__ == "__main__":
    main()
