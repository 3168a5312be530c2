"""Convert a llama-architecture GGUF (as written by llama.cpp's convert_hf_to_gguf) back into
Hugging Face folders: config.json, generation_config.json, model.safetensors, tokenizer.json,
tokenizer_config.json.

    python -m qst_py.gguf_to_hf GGUF OUT_DIR_F32 [OUT_DIR_BF16]

Everything model-specific (sizes, eps, rope theta, special ids, chat template, vocab, merges)
is read from the GGUF metadata. Quantized tensors (Q4_1, Q8_0, ...) are dequantized with
gguf.quants. The q/k row permutation llama.cpp applies for its rotary layout is undone, so the
result uses HF's rotate_half convention. Output folders are written to a temp dir and renamed,
so an existing folder is always complete.
"""
import json
import os
import shutil
import sys

import numpy as np

from . import safetensors_np as st

TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED, TOKEN_BYTE = 1, 2, 3, 4, 5, 6

REQUIRED_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def folder_is_complete(path: str) -> bool:
    return all(os.path.isfile(os.path.join(path, f)) and os.path.getsize(os.path.join(path, f)) > 0 for f in REQUIRED_FILES)


class GGUFModel:
    def __init__(self, path: str):
        import gguf  # imported lazily so `--help` works without it
        self.gguf = gguf
        self.path = path
        self.reader = gguf.GGUFReader(path)
        self.arch = self.field("general.architecture")
        if self.arch != "llama":
            raise ValueError(f"{path}: general.architecture is {self.arch!r}; only 'llama' is supported")
        self.tensors = {t.name: t for t in self.reader.tensors}

    def field(self, key, default=KeyError):
        f = self.reader.fields.get(key)
        if f is None:
            if default is KeyError:
                raise KeyError(f"{self.path}: metadata field {key} missing")
            return default
        return f.contents()

    def arch_field(self, key, default=KeyError):
        return self.field(f"{self.arch}.{key}", default)

    def tensor(self, name: str) -> np.ndarray:
        """Dequantized float32 tensor in HF orientation: GGUF lists dims fastest-first (ne order),
        so the row-major shape is the reversed ne list, which is HF's [out, in]."""
        if name not in self.tensors:
            raise KeyError(f"{self.path}: tensor {name} missing")
        t = self.tensors[name]
        shape = tuple(int(x) for x in reversed(list(t.shape)))
        arr = self.gguf.quants.dequantize(np.asarray(t.data), t.tensor_type)
        return np.ascontiguousarray(arr, dtype=np.float32).reshape(shape)


def _short_float(x: float) -> float:
    """GGUF stores eps/theta as float32; report the shortest decimal that round-trips it (9.9999997e-06 -> 1e-05)."""
    return float(str(np.float32(x)))


def unpermute_rope_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Inverse of llama.cpp's permute(): it maps HF row (h, s, j) [s in {0,1} = rotate_half halves]
    to GGUF row (h, j, s) (interleaved pairs). Here we map (h, j, s) back to (h, s, j)."""
    out_dim = w.shape[0]
    if out_dim % (2 * n_heads):
        raise ValueError(f"rope rows {out_dim} not divisible by 2*{n_heads}")
    half = out_dim // n_heads // 2
    return np.ascontiguousarray(w.reshape(n_heads, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape))


def build_config(m: GGUFModel, torch_dtype: str) -> dict:
    hidden = int(m.arch_field("embedding_length"))
    n_heads = int(m.arch_field("attention.head_count"))
    n_kv = int(m.arch_field("attention.head_count_kv", n_heads))
    tokens = m.field("tokenizer.ggml.tokens")
    head_dim = int(m.arch_field("rope.dimension_count", hidden // n_heads))
    rope_scaling = None
    scaling_type = m.arch_field("rope.scaling.type", None)
    if scaling_type not in (None, "none"):
        rope_scaling = {"rope_type": scaling_type, "type": scaling_type,
                        "factor": _short_float(m.arch_field("rope.scaling.factor"))}
    eos = int(m.field("tokenizer.ggml.eos_token_id"))
    bos = int(m.field("tokenizer.ggml.bos_token_id"))
    pad = m.field("tokenizer.ggml.padding_token_id", None)
    return {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "head_dim": head_dim,
        "hidden_act": "silu",
        "hidden_size": hidden,
        "initializer_range": 0.02,
        "intermediate_size": int(m.arch_field("feed_forward_length")),
        "max_position_embeddings": int(m.arch_field("context_length")),
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": n_heads,
        "num_hidden_layers": int(m.arch_field("block_count")),
        "num_key_value_heads": n_kv,
        "pad_token_id": None if pad is None else int(pad),
        "pretraining_tp": 1,
        "rms_norm_eps": _short_float(m.arch_field("attention.layer_norm_rms_epsilon")),
        "rope_scaling": rope_scaling,
        "rope_theta": _short_float(m.arch_field("rope.freq_base", 10000.0)),
        "tie_word_embeddings": "output.weight" not in m.tensors,
        "torch_dtype": torch_dtype,
        "use_cache": True,
        "vocab_size": int(m.arch_field("vocab_size", len(tokens))),
    }


def hf_tensors(m: GGUFModel, cfg: dict):
    """Yield (hf_name, float32 array) layer by layer, in HF's usual order."""
    n_heads, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    yield "model.embed_tokens.weight", m.tensor("token_embd.weight")
    per_layer = [
        ("attn_norm", "input_layernorm"),
        ("attn_q", "self_attn.q_proj"), ("attn_k", "self_attn.k_proj"),
        ("attn_v", "self_attn.v_proj"), ("attn_output", "self_attn.o_proj"),
        ("ffn_norm", "post_attention_layernorm"),
        ("ffn_gate", "mlp.gate_proj"), ("ffn_up", "mlp.up_proj"), ("ffn_down", "mlp.down_proj"),
    ]
    for i in range(cfg["num_hidden_layers"]):
        for g, h in per_layer:
            w = m.tensor(f"blk.{i}.{g}.weight")
            if g == "attn_q":
                w = unpermute_rope_rows(w, n_heads)
            elif g == "attn_k":
                w = unpermute_rope_rows(w, n_kv)  # llama.cpp permutes k with the kv head count
            yield f"model.layers.{i}.{h}.weight", w
    yield "model.norm.weight", m.tensor("output_norm.weight")
    if not cfg["tie_word_embeddings"]:
        yield "lm_head.weight", m.tensor("output.weight")


def build_tokenizer(m: GGUFModel):
    """Byte-level BPE tokenizer as HF ships SmolLM2 / GPT-2 style models."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    if m.field("tokenizer.ggml.model") != "gpt2":
        raise ValueError(f"{m.path}: tokenizer.ggml.model {m.field('tokenizer.ggml.model')!r} is not byte-level BPE ('gpt2')")
    tokens = m.field("tokenizer.ggml.tokens")
    types = m.field("tokenizer.ggml.token_type")
    merges = []
    for line in m.field("tokenizer.ggml.merges"):
        parts = line.split(" ")
        if len(parts) != 2:
            raise ValueError(f"{m.path}: tokenizer.ggml.merges entry {line!r} is not two tokens")
        merges.append((parts[0], parts[1]))
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, byte_fallback=False, fuse_unk=False))
    pre = m.field("tokenizer.ggml.pre", "default")
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    if pre == "smollm":
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    elif pre in ("default", "gpt-2", "gpt2"):
        tok.pre_tokenizer = byte_level
    else:
        raise ValueError(f"{m.path}: tokenizer.ggml.pre {pre!r} not supported (smollm, gpt-2)")
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    tok.post_processor = processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True)
    specials = [(i, t) for i, (t, ty) in enumerate(zip(tokens, types)) if ty in (TOKEN_CONTROL, TOKEN_USER_DEFINED)]
    tok.add_tokens([AddedToken(t, special=(types[i] == TOKEN_CONTROL), normalized=False,
                               lstrip=False, rstrip=False, single_word=False) for i, t in specials])
    for i, t in specials:
        if tok.token_to_id(t) != i:
            raise ValueError(f"{m.path}: special token {t!r} got id {tok.token_to_id(t)}, expected {i}")
    return tok, specials, tokens, types


def build_tokenizer_config(m: GGUFModel, cfg: dict, specials, tokens, types) -> dict:
    template = m.field("tokenizer.chat_template", None)
    name = lambda key: None if m.field(key, None) is None else tokens[int(m.field(key))]
    decoder = {str(i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                        "single_word": False, "special": types[i] == TOKEN_CONTROL} for i, t in specials}
    bos, eos = name("tokenizer.ggml.bos_token_id"), name("tokenizer.ggml.eos_token_id")
    additional = [t for t in dict.fromkeys([bos, eos]) if t is not None and template and t in template]
    out = {
        "add_bos_token": bool(m.field("tokenizer.ggml.add_bos_token", False)),
        "add_prefix_space": False,
        "added_tokens_decoder": decoder,
        "additional_special_tokens": additional,
        "bos_token": bos,
        "clean_up_tokenization_spaces": False,
        "eos_token": eos,
        "model_max_length": cfg["max_position_embeddings"],
        "pad_token": name("tokenizer.ggml.padding_token_id"),
        "tokenizer_class": "GPT2Tokenizer",
        "unk_token": name("tokenizer.ggml.unknown_token_id"),
        "vocab_size": len(tokens),
    }
    if template:
        out["chat_template"] = template
    return out


def save_tokenizer_json(tok, path):
    """Save like the Hub's SmolLM2 file: merges as "a b" strings (the older, still most common form;
    recent `tokenizers` would write [a, b] pairs). Both forms load identically."""
    data = json.loads(tok.to_str())
    data["model"]["merges"] = [" ".join(pair) if isinstance(pair, list) else pair for pair in data["model"]["merges"]]
    data["model"].pop("ignore_merges", None)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
        f.write("\n")


def _write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def convert(gguf_path: str, out_f32: str, out_bf16: str = None) -> None:
    m = GGUFModel(gguf_path)
    targets = [(out_f32, "float32")] + ([(out_bf16, "bfloat16")] if out_bf16 else [])
    targets = [(d, dt) for d, dt in targets if not folder_is_complete(d)]
    if not targets:
        return
    tok, specials, tokens, types = build_tokenizer(m)
    tmp_dirs = {}
    for d, dt in targets:
        tmp = d + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        tmp_dirs[d] = tmp
        cfg = build_config(m, dt)
        _write_json(os.path.join(tmp, "config.json"), cfg)
        gen = {"bos_token_id": cfg["bos_token_id"], "eos_token_id": cfg["eos_token_id"]}
        if cfg["pad_token_id"] is not None:
            gen["pad_token_id"] = cfg["pad_token_id"]
        _write_json(os.path.join(tmp, "generation_config.json"), gen)
        save_tokenizer_json(tok, os.path.join(tmp, "tokenizer.json"))
        _write_json(os.path.join(tmp, "tokenizer_config.json"), build_tokenizer_config(m, cfg, specials, tokens, types))
    cfg = build_config(m, "float32")
    f32 = dict(hf_tensors(m, cfg))
    for d, dt in targets:
        data = f32 if dt == "float32" else {k: st.BF16Array(st.f32_to_bf16_bits(v)) for k, v in f32.items()}
        st.save(os.path.join(tmp_dirs[d], "model.safetensors"), data, {"format": "pt"})
        shutil.rmtree(d, ignore_errors=True)
        os.rename(tmp_dirs[d], d)


def main(argv):
    if len(argv) not in (2, 3) or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 2
    convert(*argv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
