#!/usr/bin/env python3
"""Independent NumPy float64 reference forward pass for LLaMA-family causal LMs (llama, mistral, qwen2)
and OPT (model_type "opt": learned positions, LayerNorm before or after, biases, ReLU FFN,
project_in/project_out; see qst_py/opt_reference.py).

Reads a Hugging Face folder: config.json + model.safetensors (or model.safetensors.index.json shards),
F32/F16/BF16 weights (widened exactly, then computed in float64). No torch, no transformers.

Covers: GQA; RoPE in HF's rotate_half convention with rope_theta and rope_scaling
(linear, llama3: factor/low_freq_factor/high_freq_factor/original_max_position_embeddings);
RMSNorm x * rsqrt(mean(x^2) + eps) * w; SwiGLU MLP; q/k/v(/o) biases when the tensors exist
(qwen2); tied or untied lm_head; mistral sliding_window; padding masks.

CLI:
  reference_forward.py MODEL_DIR --ids 1,2,3 [--ids 4,5] --out logits.npy
      float64 logits [batch, T, vocab]. Sequences of different lengths are right-padded;
      logits at padded positions are 0.0. --mask-out FILE.npy also saves the [batch, T] 0/1 mask.
  reference_forward.py MODEL_DIR --greedy N --prompt-ids 1,2,3 [--stop-at-eos]
      prints the N greedily generated ids as a JSON list on stdout.
  Options:
      --override-safetensors FILE  tensors in FILE replace the folder's tensors of the same name
                                   (e.g. dequantized NF4 weights); unknown names are an error.
      --hidden-out FILE.npy        also save hidden states [num_layers+1, batch, T, hidden]
                                   (embeddings, then the output of every decoder layer, before final norm).
      --no-sliding-window          ignore mistral's sliding_window (full causal attention), to show
                                   a test's sequences really reach past the window.

Sliding window (mistral): the query at position i attends keys j with i - sliding_window < j <= i,
as Hugging Face's sliding-window causal mask (kv_idx > q_idx - sliding_window).

Python API (import with Scripts/ on sys.path):
  m = ReferenceModel(model_dir, override=None)
  m.forward(ids[B,T] int array, mask[B,T] or None, return_hidden=False) -> logits (and hidden list)
  m.greedy(prompt_ids, n, stop_at_eos=False) -> list[int]
"""
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qst_py.venv import ensure_venv  # noqa: E402

ensure_venv(("numpy",))

import numpy as np  # noqa: E402

from qst_py import safetensors_np as st  # noqa: E402
from qst_py.greedy import greedy  # noqa: E402

SUPPORTED = ("llama", "mistral", "qwen2", "opt")


def rope_inv_freq(cfg: dict, head_dim: int) -> np.ndarray:
    theta = float(cfg.get("rope_theta", 10000.0))
    inv = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    rs = cfg.get("rope_scaling")
    if not rs:
        return inv
    kind = rs.get("rope_type", rs.get("type"))
    if kind in (None, "default"):
        return inv
    factor = float(rs["factor"])
    if kind == "linear":
        return inv / factor  # HF divides positions by factor; same angles
    if kind == "llama3":
        low, high = float(rs["low_freq_factor"]), float(rs["high_freq_factor"])
        old_ctx = float(rs["original_max_position_embeddings"])
        low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
        wavelen = 2 * math.pi / inv
        scaled = np.where(wavelen > low_wavelen, inv / factor, inv)
        smooth = (old_ctx / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
        return np.where(medium, smoothed, scaled)
    raise ValueError(f"config.json: rope_scaling type {kind!r} not supported (linear, llama3)")


def rotate_half(x: np.ndarray) -> np.ndarray:
    h = x.shape[-1] // 2
    return np.concatenate([-x[..., h:], x[..., :h]], axis=-1)


def rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def ReferenceModel(model_dir: str, override: str = None):
    """The reference model for the folder's model_type (LLaMA family or OPT)."""
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    if cfg.get("model_type") not in SUPPORTED:
        raise ValueError(f"{model_dir}/config.json: model_type {cfg.get('model_type')!r} not in {SUPPORTED}")
    if cfg["model_type"] == "opt":
        from qst_py.opt_reference import OPTReferenceModel
        return OPTReferenceModel(model_dir, cfg, override)
    return LlamaReferenceModel(model_dir, cfg, override)


class LlamaReferenceModel:
    def __init__(self, model_dir: str, cfg: dict, override: str = None):
        self.cfg = cfg
        weights = st.load_hf_weights(model_dir)
        if override:
            extra = st.load(override)
            unknown = sorted(set(extra) - set(weights))
            if unknown:
                raise ValueError(f"{override}: tensors not in {model_dir}: {unknown[:5]}")
            for k, v in extra.items():
                if v.shape != weights[k].shape:
                    raise ValueError(f"{override}: tensor {k} shape {v.shape} != {weights[k].shape}")
            weights.update(extra)
        self.w = {k: np.asarray(v, dtype=np.float64) for k, v in weights.items()}
        self.hidden = int(cfg["hidden_size"])
        self.n_layers = int(cfg["num_hidden_layers"])
        self.n_heads = int(cfg["num_attention_heads"])
        self.n_kv = int(cfg.get("num_key_value_heads") or self.n_heads)
        self.head_dim = int(cfg.get("head_dim") or self.hidden // self.n_heads)
        self.eps = float(cfg.get("rms_norm_eps", 1e-6))
        self.inv_freq = rope_inv_freq(cfg, self.head_dim)
        window = cfg.get("sliding_window") if cfg["model_type"] == "mistral" else None
        self.sliding_window = int(window) if window else None
        if "lm_head.weight" in self.w:
            self.lm_head = self.w["lm_head.weight"]
        elif cfg.get("tie_word_embeddings", True):
            self.lm_head = self.w["model.embed_tokens.weight"]
        else:
            raise ValueError(f"{model_dir}: tie_word_embeddings is false but lm_head.weight is missing")

    def _linear(self, x, name):
        y = x @ self.w[name + ".weight"].T
        b = self.w.get(name + ".bias")
        return y if b is None else y + b

    def _attention(self, x, layer, cos, sin, allowed):
        B, T, _ = x.shape
        p = f"model.layers.{layer}.self_attn."
        q = self._linear(x, p + "q_proj").reshape(B, T, self.n_heads, self.head_dim).transpose(0, 2, 1, 3)
        k = self._linear(x, p + "k_proj").reshape(B, T, self.n_kv, self.head_dim).transpose(0, 2, 1, 3)
        v = self._linear(x, p + "v_proj").reshape(B, T, self.n_kv, self.head_dim).transpose(0, 2, 1, 3)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        group = self.n_heads // self.n_kv
        k = np.repeat(k, group, axis=1)  # head h uses kv head h // group, as HF repeat_kv
        v = np.repeat(v, group, axis=1)
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(self.head_dim)
        scores = np.where(allowed, scores, -np.inf)
        m = np.max(scores, axis=-1, keepdims=True)
        m = np.where(np.isfinite(m), m, 0.0)
        e = np.where(allowed, np.exp(scores - m), 0.0)
        denom = e.sum(-1, keepdims=True)
        probs = e / np.where(denom > 0, denom, 1.0)  # fully masked (padding) rows -> zeros
        out = (probs @ v).transpose(0, 2, 1, 3).reshape(B, T, self.n_heads * self.head_dim)
        return self._linear(out, p + "o_proj")

    def _mlp(self, x, layer):
        p = f"model.layers.{layer}.mlp."
        return self._linear(silu(self._linear(x, p + "gate_proj")) * self._linear(x, p + "up_proj"), p + "down_proj")

    def forward(self, ids, mask=None, return_hidden=False, start=None):
        """Logits [B, T, V] (and the hidden states before each layer and after the last). `start` = (layer, x):
        begin at that layer with x as its input instead of the embeddings (for callers that change only later
        layers' weights); the hidden list then starts at that layer."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.ndim == 1:
            ids = ids[None]
        B, T = ids.shape
        vocab = self.w["model.embed_tokens.weight"].shape[0]
        if ids.min() < 0 or ids.max() >= vocab:
            raise ValueError(f"token id out of range [0, {vocab})")
        mask = np.ones((B, T), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        # Positions count only real tokens, as HF generate does for padded batches.
        pos = np.clip(np.cumsum(mask, axis=1) - 1, 0, None).astype(np.float64)
        ang = pos[:, :, None] * self.inv_freq[None, None, :]
        emb = np.concatenate([ang, ang], axis=-1)[:, None]  # [B,1,T,D]
        cos, sin = np.cos(emb), np.sin(emb)
        i = np.arange(T)
        causal = i[None, :] <= i[:, None]
        if self.sliding_window is not None:
            causal &= (i[:, None] - i[None, :]) < self.sliding_window
        allowed = causal[None, None] & mask[:, None, None, :] & mask[:, None, :, None]
        first, x = start if start is not None else (0, self.w["model.embed_tokens.weight"][ids])
        hidden = [x]
        for layer in range(first, self.n_layers):
            p = f"model.layers.{layer}."
            x = x + self._attention(rms_norm(x, self.w[p + "input_layernorm.weight"], self.eps), layer, cos, sin, allowed)
            x = x + self._mlp(rms_norm(x, self.w[p + "post_attention_layernorm.weight"], self.eps), layer)
            hidden.append(x)
        logits = rms_norm(x, self.w["model.norm.weight"], self.eps) @ self.lm_head.T
        logits = np.where(mask[:, :, None], logits, 0.0)
        return (logits, hidden) if return_hidden else logits

    def greedy(self, prompt_ids, n, stop_at_eos=False):
        return greedy(self, prompt_ids, n, stop_at_eos)


def _parse_ids(s: str):
    try:
        return [int(t) for t in s.replace(" ", "").split(",") if t != ""]
    except ValueError:
        raise SystemExit(f"--ids/--prompt-ids: not a comma-separated integer list: {s!r}")


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("--ids", action="append", default=[], help="comma-separated token ids; repeat for a batch")
    ap.add_argument("--out", help="where to save float64 logits [batch, T, vocab] (.npy)")
    ap.add_argument("--mask-out", help="where to save the [batch, T] padding mask (.npy)")
    ap.add_argument("--hidden-out", help="where to save hidden states [layers+1, batch, T, hidden] (.npy)")
    ap.add_argument("--greedy", type=int, help="number of tokens to generate greedily")
    ap.add_argument("--prompt-ids", help="comma-separated prompt ids for --greedy")
    ap.add_argument("--stop-at-eos", action="store_true")
    ap.add_argument("--override-safetensors", help="safetensors whose tensors replace the folder's")
    ap.add_argument("--no-sliding-window", action="store_true", help="full causal attention even for mistral")
    a = ap.parse_args(argv)
    model = ReferenceModel(a.model_dir, a.override_safetensors)
    if a.no_sliding_window and hasattr(model, "sliding_window"):
        model.sliding_window = None
    if a.greedy is not None:
        if not a.prompt_ids:
            ap.error("--greedy needs --prompt-ids")
        print(json.dumps(model.greedy(_parse_ids(a.prompt_ids), a.greedy, a.stop_at_eos)))
        return 0
    if not a.ids or not a.out:
        ap.error("give --ids (one or more) and --out, or --greedy N --prompt-ids")
    seqs = [_parse_ids(s) for s in a.ids]
    if any(len(s) == 0 for s in seqs):
        ap.error("--ids: empty sequence")
    T = max(len(s) for s in seqs)
    ids = np.zeros((len(seqs), T), dtype=np.int64)
    mask = np.zeros((len(seqs), T), dtype=bool)
    for b, s in enumerate(seqs):
        ids[b, : len(s)] = s
        mask[b, : len(s)] = True
    logits, hidden = model.forward(ids, mask, return_hidden=True)
    np.save(a.out, logits.astype(np.float64))
    if a.mask_out:
        np.save(a.mask_out, mask.astype(np.uint8))
    if a.hidden_out:
        np.save(a.hidden_out, np.stack(hidden).astype(np.float64))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
