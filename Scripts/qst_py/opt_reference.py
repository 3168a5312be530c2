"""Independent NumPy float64 reference forward of Hugging Face OPT causal LMs (model_type "opt").

Written from the OPT architecture as Hugging Face's `OPTForCausalLM` defines it (checkpoint tensor names,
config fields), not from QST's Swift code:

- token embeddings `model.decoder.embed_tokens.weight` [V, word_embed_proj_dim], optionally mapped to the
  hidden size by `model.decoder.project_in.weight` (no bias);
- learned positions `model.decoder.embed_positions.weight` [max_position_embeddings + 2, hidden]; a token's
  row is (number of real tokens up to and including it) - 1 + 2 (the OPT offset of 2);
- decoder layers with LayerNorm (eps 1e-5, affine unless layer_norm_elementwise_affine is false) either
  before each sub-block (do_layer_norm_before, 125m and >= 1.3b) or after each residual sum (350m);
  multi-head attention with q/k/v/out biases (enable_bias), q scaled by head_dim^-0.5; FFN fc1 -> act -> fc2
  (activation_function relu, or gelu);
- `model.decoder.final_layer_norm` only when do_layer_norm_before (and not _remove_final_layer_norm), then
  `model.decoder.project_out.weight` back to word_embed_proj_dim; LM head tied to embed_tokens unless
  `lm_head.weight` exists.

API as reference_forward.ReferenceModel: forward(ids, mask=None, return_hidden=False) and greedy(...).
Hidden states: the input to layer 0 (embeddings after project_in plus positions), then every layer's output.
"""
import math

import numpy as np

from . import safetensors_np as st
from .greedy import greedy

LN_EPS = 1e-5
P = "model.decoder."


def layer_norm(x, w, b):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    y = (x - m) / np.sqrt(v + LN_EPS)
    if w is not None:
        y = y * w
    if b is not None:
        y = y + b
    return y


def activation(name, x):
    if name == "relu":
        return np.maximum(x, 0.0)
    if name == "gelu":
        erf = np.vectorize(math.erf)
        return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))
    raise ValueError(f"config.json: activation_function {name!r} not supported (relu, gelu)")


class OPTReferenceModel:
    def __init__(self, model_dir, cfg, override=None):
        self.cfg = cfg
        weights = st.load_hf_weights(model_dir)
        if override:
            extra = st.load(override)
            unknown = sorted(set(extra) - set(weights))
            if unknown:
                raise ValueError(f"{override}: tensors not in {model_dir}: {unknown[:5]}")
            weights.update(extra)
        self.w = {k: np.asarray(v, dtype=np.float64) for k, v in weights.items()}
        self.hidden = int(cfg["hidden_size"])
        self.n_layers = int(cfg["num_hidden_layers"])
        self.n_heads = int(cfg["num_attention_heads"])
        self.n_kv = self.n_heads
        self.head_dim = self.hidden // self.n_heads
        self.pre_ln = bool(cfg.get("do_layer_norm_before", True))
        self.act = cfg.get("activation_function", "relu")
        self.final_ln = self.pre_ln and not cfg.get("_remove_final_layer_norm", False)
        if "lm_head.weight" in self.w:
            self.lm_head = self.w["lm_head.weight"]
        else:
            self.lm_head = self.w[P + "embed_tokens.weight"]

    def _ln(self, x, name):
        return layer_norm(x, self.w.get(name + ".weight"), self.w.get(name + ".bias"))

    def _linear(self, x, name):
        y = x @ self.w[name + ".weight"].T
        b = self.w.get(name + ".bias")
        return y if b is None else y + b

    def _attention(self, x, layer, allowed):
        B, T, _ = x.shape
        p = f"{P}layers.{layer}.self_attn."
        H, hd = self.n_heads, self.head_dim
        q = (self._linear(x, p + "q_proj") * hd ** -0.5).reshape(B, T, H, hd).transpose(0, 2, 1, 3)
        k = self._linear(x, p + "k_proj").reshape(B, T, H, hd).transpose(0, 2, 1, 3)
        v = self._linear(x, p + "v_proj").reshape(B, T, H, hd).transpose(0, 2, 1, 3)
        scores = np.where(allowed, q @ k.transpose(0, 1, 3, 2), -np.inf)
        m = np.max(scores, axis=-1, keepdims=True)
        m = np.where(np.isfinite(m), m, 0.0)
        e = np.where(allowed, np.exp(scores - m), 0.0)
        denom = e.sum(-1, keepdims=True)
        probs = e / np.where(denom > 0, denom, 1.0)
        out = (probs @ v).transpose(0, 2, 1, 3).reshape(B, T, H * hd)
        return self._linear(out, p + "out_proj")

    def _ffn(self, x, layer):
        p = f"{P}layers.{layer}."
        return self._linear(activation(self.act, self._linear(x, p + "fc1")), p + "fc2")

    def forward(self, ids, mask=None, return_hidden=False):
        ids = np.asarray(ids, dtype=np.int64)
        if ids.ndim == 1:
            ids = ids[None]
        B, T = ids.shape
        tokens = self.w[P + "embed_tokens.weight"]
        if ids.min() < 0 or ids.max() >= tokens.shape[0]:
            raise ValueError(f"token id out of range [0, {tokens.shape[0]})")
        mask = np.ones((B, T), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        positions = np.cumsum(mask, axis=1) * mask - 1 + 2  # HF: (cumsum * mask) - 1, plus the offset 2
        table = self.w[P + "embed_positions.weight"]
        if positions.max() >= table.shape[0]:
            raise ValueError(f"sequence longer than max_position_embeddings ({table.shape[0] - 2})")
        x = tokens[ids]
        if P + "project_in.weight" in self.w:
            x = x @ self.w[P + "project_in.weight"].T
        x = x + table[positions]
        i = np.arange(T)
        causal = i[None, :] <= i[:, None]
        allowed = causal[None, None] & mask[:, None, None, :] & mask[:, None, :, None]
        hidden = [x]
        for layer in range(self.n_layers):
            p = f"{P}layers.{layer}."
            if self.pre_ln:
                x = x + self._attention(self._ln(x, p + "self_attn_layer_norm"), layer, allowed)
                x = x + self._ffn(self._ln(x, p + "final_layer_norm"), layer)
            else:
                x = self._ln(x + self._attention(x, layer, allowed), p + "self_attn_layer_norm")
                x = self._ln(x + self._ffn(x, layer), p + "final_layer_norm")
            hidden.append(x)
        logits = np.where(mask[:, :, None], self.head_input(x) @ self.lm_head.T, 0.0)
        return (logits, hidden) if return_hidden else logits

    def head_input(self, x):
        """What the LM head reads from the last layer's output: final LayerNorm (pre-norm models), project_out."""
        if self.final_ln:
            x = self._ln(x, P + "final_layer_norm")
        if P + "project_out.weight" in self.w:
            x = x @ self.w[P + "project_out.weight"].T
        return x

    def greedy(self, prompt_ids, n, stop_at_eos=False):
        return greedy(self, prompt_ids, n, stop_at_eos)
