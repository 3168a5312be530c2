#!/usr/bin/env python3
"""Independent float64 NumPy reference of the QST side network (Formats/SIDE.md), for tests.

Written from the spec and the reference PyTorch implementation's forward
(YouAreSpecialToMe/QST modeling_llama_qst.py: QSTLlamaModel.forward, QSTLlamaForCausalLM.forward,
QSTConfig.AdapterLinear; for OPT bases modeling_opt_qst.py: OPTDecoderLayer at width d/r, the
final_layer_norm_qst, and its head mix sigma(z_ref)*up + (1 - sigma(z_ref))*h with z_ref = -lm_head_z as
Formats/SIDE.md §9 maps it; QST's residual head mix h + (1 - sigma(z))*up from SIDE.md §2), not from QST's
Swift code. Evaluation mode (no dropout).

    side_reference.py SIDE_DIR FIXTURE.safetensors OUT.safetensors [--fd-eps 1e-6]

SIDE_DIR holds side.safetensors + side_config.json. FIXTURE holds the frozen model's view of one batch:
`hidden.{v}` [n, d] for v = 0..L (embeddings, then after each layer), `final` [n, e] = norm(h_L)
(e = d, or OPT's word_embed_proj_dim after project_out), `head` [V, e], `labels` [n] int32 (-100 = ignore),
`lengths` [B] int32 (and `targets` [n] for a regression head). OUT gets `loss` [1] (mean cross-entropy at
the labelled positions through the LM head, or of the classification head `score.*` when side_config.json
has numLabels, SIDE.md §10; mean squared error for numLabels = 1) and, for every side tensor, `grad.{name}`: the central finite
difference of the float64 loss with respect to each element (exact to ~1e-9 at float64).
"""
import functools
import json
import math
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qst_py.venv import ensure_venv  # noqa: E402

ensure_venv(("numpy",))

import argparse  # noqa: E402

import numpy as np  # noqa: E402

from qst_py import safetensors_np  # noqa: E402

_erf = np.vectorize(math.erf)


def act(name, x):
    if name in ("swish", "silu"):
        return x / (1 + np.exp(-x))
    if name == "gelu":
        return 0.5 * x * (1 + _erf(x / math.sqrt(2)))
    if name == "relu":
        return np.maximum(x, 0)
    raise ValueError(name)


def rms_norm(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def layer_norm(x, w, b, eps=1e-5):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + eps) * w + b


@functools.lru_cache(maxsize=None)
def rope_tables(hd, theta, T):
    """cos and sin [1, T, 1, hd] of HF's rotary embedding at positions 0..T-1 (the same for every call)."""
    inv = 1.0 / theta ** (np.arange(0, hd, 2, dtype=np.float64) / hd)
    ang = np.arange(T, dtype=np.float64)[:, None] * inv[None, :]
    cos = np.concatenate([np.cos(ang)] * 2, -1)[None, :, None, :]
    sin = np.concatenate([np.sin(ang)] * 2, -1)[None, :, None, :]
    return cos, sin


@functools.lru_cache(maxsize=None)
def attention_mask(lengths, T):
    """[B, 1, T, T]: query i may see key j when j <= i and j is inside its sequence (lengths: a tuple)."""
    causal = np.tril(np.ones((T, T), dtype=bool))
    return causal[None, None] & (np.arange(T)[None, None, None, :] < np.array(lengths)[:, None, None, None])


def attend(q, k, v, lengths, T):
    """Softmax attention of q [B, T, H, hd] over k, v [B, T, H, hd] (key heads already repeated per query
    head) with the causal and padding mask; the 1/sqrt(hd) scale is the caller's. Returns [B, T, H, hd]."""
    allowed = attention_mask(tuple(int(n) for n in lengths), T)
    s = np.where(allowed, np.einsum("bihd,bjhd->bhij", q, k), -np.inf)
    e = np.where(allowed, np.exp(s - s.max(-1, keepdims=True)), 0.0)
    return np.einsum("bhij,bjhd->bihd", e / e.sum(-1, keepdims=True), v)


def rope(x, heads, hd, theta, T):
    """x [B, T, heads*hd]; HF rotate_half with positions 0..T-1."""
    cos, sin = rope_tables(hd, float(theta), T)
    B = x.shape[0]
    x = x.reshape(B, T, heads, hd)
    half = hd // 2
    rot = np.concatenate([-x[..., half:], x[..., :half]], -1)
    return (x * cos + rot * sin).reshape(B, T, heads * hd)


def block(p, i, x, cfg, lengths, T):
    """One LLaMA decoder layer at side width on x [B, T, w]."""
    pre = f"model.qst_layers.{i}."
    base = cfg["base"]
    H, K = base["attentionHeads"], base["keyValueHeads"]
    w = base["hiddenSize"] // cfg["r"]
    hd = w // H
    eps = base["rmsNormEps"]
    B = x.shape[0]
    n1 = rms_norm(x, p[pre + "input_layernorm.weight"], eps)
    q = rope(n1 @ p[pre + "self_attn.q_proj.weight"].T, H, hd, base["ropeTheta"], T).reshape(B, T, H, hd)
    k = rope(n1 @ p[pre + "self_attn.k_proj.weight"].T, K, hd, base["ropeTheta"], T).reshape(B, T, K, hd)
    v = (n1 @ p[pre + "self_attn.v_proj.weight"].T).reshape(B, T, K, hd)
    # Query head h reads key/value head h // (H // K) (grouped-query attention).
    out = attend(q / math.sqrt(hd), np.repeat(k, H // K, axis=2), np.repeat(v, H // K, axis=2), lengths, T)
    r1 = x + out.reshape(B, T, H * hd) @ p[pre + "self_attn.o_proj.weight"].T
    n2 = rms_norm(r1, p[pre + "post_attention_layernorm.weight"], eps)
    gate = n2 @ p[pre + "mlp.gate_proj.weight"].T
    up = n2 @ p[pre + "mlp.up_proj.weight"].T
    return r1 + (act(base.get("hiddenAct", "silu"), gate) * up) @ p[pre + "mlp.down_proj.weight"].T


def opt_layer_norm(p, name, x):
    """nn.LayerNorm `name`; without tensors (layer_norm_elementwise_affine false) a plain normalisation."""
    return layer_norm(x, p.get(name + ".weight", 1.0), p.get(name + ".bias", 0.0))


def opt_linear(p, name, x):
    y = x @ p[name + ".weight"].T
    return y + p[name + ".bias"] if name + ".bias" in p else y


def opt_block(p, i, x, cfg, lengths, T):
    """One OPT decoder layer (OPTDecoderLayer) at side width on x [B, T, w]; no positions inside."""
    pre = f"model.decoder.qst_layers.{i}."
    base = cfg["base"]
    H = base["attentionHeads"]
    w = base["hiddenSize"] // cfg["r"]
    hd = w // H
    B = x.shape[0]

    def ln(name, y):
        return opt_layer_norm(p, pre + name, y)

    def attention(y):
        q = (opt_linear(p, pre + "self_attn.q_proj", y) * hd ** -0.5).reshape(B, T, H, hd)
        k = opt_linear(p, pre + "self_attn.k_proj", y).reshape(B, T, H, hd)
        v = opt_linear(p, pre + "self_attn.v_proj", y).reshape(B, T, H, hd)
        out = attend(q, k, v, lengths, T)
        return opt_linear(p, pre + "self_attn.out_proj", out.reshape(B, T, w))

    def ffn(y):
        return opt_linear(p, pre + "fc2", act(base["hiddenAct"], opt_linear(p, pre + "fc1", y)))

    if base.get("layerNormBefore", True):
        x = x + attention(ln("self_attn_layer_norm", x))
        return x + ffn(ln("final_layer_norm", x))
    x = ln("self_attn_layer_norm", x + attention(x))
    return ln("final_layer_norm", x + ffn(x))


def is_opt(cfg):
    return cfg["base"].get("modelFamily") == "opt"


def downsample(p, i, h, cfg):
    kind, r = cfg["downsample"], cfg["r"]
    pre = f"model.{'decoder.' if is_opt(cfg) else ''}downsample.{i}."
    if kind == "adapter":
        y = act(cfg["activation"], h @ p[pre + "adapter_A.weight"].T) @ p[pre + "adapter_B.weight"].T
        return layer_norm(y, p[pre + "post_layer_norm.weight"], p[pre + "post_layer_norm.bias"])
    if kind == "linear":
        return h @ p[pre + "weight"].T
    g = h.reshape(*h.shape[:-1], h.shape[-1] // r, r)
    return g.mean(-1) if kind == "avgpool" else g.max(-1)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def head_mix(cfg, a, up, final):
    """SIDE.md §2: the gated mix a*up + (1 - a)*final (a = 1 - sigma(z_head)), or with side_config.json's
    "headMix": "residual" final + a*up (the tuned model is the base while up is zero)."""
    mix = cfg.get("headMix", "gated")
    if mix == "residual":
        return final + a * up
    if mix != "gated":
        raise SystemExit(f"side_config.json: unknown headMix {mix!r}")
    return a * up + (1 - a) * final


def side_states(p, fx, cfg, start=0, s=None):
    """The side stream before each layer from `start` on and after the last: [s_start, ..., s_L]. s_0 is the
    downsampled embeddings; from `start` > 0 the caller gives s_start (earlier layers' tensors do not change it)."""
    L = cfg["base"]["layerCount"]
    lengths = fx["lengths"].astype(int)
    B = len(lengths)
    T = fx["hidden.0"].shape[0] // B
    opt = is_opt(cfg)
    if start == 0:
        s = downsample(p, 0, fx["hidden.0"].reshape(B, T, -1), cfg)
    states = [s]
    for i in range(start, L):
        z = sigmoid(p[f"model.{'decoder.' if opt else ''}z.{i}"])
        m = (1 - z) * downsample(p, i, fx[f"hidden.{i + 1}"].reshape(B, T, -1), cfg) + z * s
        s = opt_block(p, i, m, cfg, lengths, T) if opt else block(p, i, m, cfg, lengths, T)
        states.append(s)
    return states


def first_layer(name, L):
    """The first layer whose computation reads tensor `name`: i for layer i's block, gate z.i and downsampler
    i (0 for downsample.0, which also makes s_0), L for the head's tensors (after the last layer). A name this
    does not know counts as 0: recomputed from the start, never wrongly skipped."""
    m = re.search(r"(?:qst_layers|downsample)\.(\d+)\.|\.z\.(\d+)$", name)
    if m:
        return int(m.group(1) or m.group(2))
    head = ("lm_head_z", "upsample.", "score.", "model.norm_qst.", "model.decoder.final_layer_norm_qst.")
    return L if name.startswith(head) else 0


def loss(p, fx, cfg, start=0, s=None):
    """Mean loss of the batch; with `start` and s_start (side_states' state before layer `start`), only the
    layers from `start` on are recomputed."""
    lengths = fx["lengths"].astype(int)
    B = len(lengths)
    n = fx["hidden.0"].shape[0]
    T = n // B
    opt = is_opt(cfg)
    s = side_states(p, fx, cfg, start, s)[-1]
    final = fx["final"].reshape(B, T, -1)
    if opt:
        if cfg["base"].get("layerNormBefore", True):
            s = opt_layer_norm(p, "model.decoder.final_layer_norm_qst", s)
        z_ref = sigmoid(-p["lm_head_z"])  # the reference OPT head: sigma(z_ref)*up + (1 - sigma(z_ref))*h
        o = head_mix(cfg, z_ref, s @ p["upsample.weight"].T + p["upsample.bias"], final)
    else:
        side = rms_norm(s, p["model.norm_qst.weight"], cfg["base"]["rmsNormEps"])
        zh = sigmoid(p["lm_head_z"])
        o = head_mix(cfg, 1 - zh, side @ p["upsample.weight"].T + p["upsample.bias"], final)
    labels = fx["labels"].astype(int)
    rows = np.nonzero(labels != -100)[0]
    if cfg.get("numLabels"):
        # Sequence classification (SIDE.md §10): score = Linear(d, K) with bias on o at the labelled rows;
        # the label there is the class (K >= 2, cross-entropy) or marks the row of targets[row] (K = 1, MSE).
        lg = o.reshape(n, -1)[rows] @ p["score.weight"].T + p["score.bias"]
        if cfg["numLabels"] == 1:
            return float(((lg[:, 0] - fx["targets"][rows]) ** 2).mean())
    else:
        lg = (o.reshape(n, -1) @ fx["head"].T)[rows]
    mx = lg.max(-1, keepdims=True)
    lse = mx[:, 0] + np.log(np.exp(lg - mx).sum(-1))
    return float((lse - lg[np.arange(len(rows)), labels[rows]]).mean())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("side_dir")
    ap.add_argument("fixture")
    ap.add_argument("out")
    ap.add_argument("--fd-eps", type=float, default=1e-6)
    a = ap.parse_args()
    with open(os.path.join(a.side_dir, "side_config.json")) as f:
        cfg = json.load(f)
    p = {k: v.astype(np.float64) for k, v in safetensors_np.load(os.path.join(a.side_dir, "side.safetensors")).items()}
    fx = {k: (v.astype(np.float64) if v.dtype.kind == "f" else v) for k, v in safetensors_np.load(a.fixture).items()}
    out = {"loss": np.array([loss(p, fx, cfg)])}
    # A perturbed tensor changes nothing before the first layer that reads it: each difference starts there,
    # from the unperturbed stream (the same loss function, fewer layers run).
    L = cfg["base"]["layerCount"]
    states = side_states(p, fx, cfg)
    for name, t in p.items():
        start = first_layer(name, L)
        g = np.zeros(t.size)
        flat = t.reshape(-1)
        for j in range(t.size):
            saved = flat[j]
            flat[j] = saved + a.fd_eps
            lp = loss(p, fx, cfg, start, states[start])
            flat[j] = saved - a.fd_eps
            lm = loss(p, fx, cfg, start, states[start])
            flat[j] = saved
            g[j] = (lp - lm) / (2 * a.fd_eps)
        out["grad." + name] = g
    safetensors_np.save(a.out, out)


if __name__ == "__main__":
    main()
