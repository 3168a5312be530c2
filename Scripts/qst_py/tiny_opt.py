"""Synthetic OPT checkpoints for Scripts/make-tiny-models (Hugging Face OPTForCausalLM tensor names).

Three shapes, each exercising other parts of the architecture:
  tiny-opt           do_layer_norm_before (125m-style), biases, relu, tied head, hidden 64, 4 heads, 2 layers
  tiny-opt-350m      post-LayerNorm (350m-style: no decoder final_layer_norm), word_embed_proj_dim 32 with
                     project_in/project_out, hidden 64, 4 heads, 3 layers, ffn 96
  tiny-opt-nobias    enable_bias false, layer_norm_elementwise_affine false, untied lm_head, hidden 48, 3 heads
Every folder carries a tiny byte-level BPE tokenizer.json (GPT-2 byte alphabet, OPT's special tokens at
0..3, merges "Ġ n" and "Ġ p" so " negative" and " positive" start with different tokens).
"""
import json

import numpy as np

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]


def opt_config(**over):
    cfg = {
        "architectures": ["OPTForCausalLM"], "model_type": "opt", "hidden_size": 64, "ffn_dim": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 300, "max_position_embeddings": 256,
        "word_embed_proj_dim": 64, "do_layer_norm_before": True, "activation_function": "relu",
        "enable_bias": True, "layer_norm_elementwise_affine": True, "dropout": 0.1, "attention_dropout": 0.0,
        "layerdrop": 0.0, "init_std": 0.02, "bos_token_id": 2, "eos_token_id": 2, "pad_token_id": 1,
        "torch_dtype": "float32", "use_cache": True, "_remove_final_layer_norm": False,
    }
    cfg.update(over)
    return cfg


def opt_weights(cfg, seed):
    rng = np.random.default_rng(seed)
    H, F, V = cfg["hidden_size"], cfg["ffn_dim"], cfg["vocab_size"]
    E = cfg["word_embed_proj_dim"]
    bias = cfg["enable_bias"]
    affine = cfg["layer_norm_elementwise_affine"]
    tied = cfg.get("tie_word_embeddings", True)

    def lin(out_f, in_f):
        return (rng.standard_normal((out_f, in_f)) / np.sqrt(in_f)).astype(np.float32)

    def vec(n, std):
        return (std * rng.standard_normal(n)).astype(np.float32)

    p = "model.decoder."
    w = {p + "embed_tokens.weight": ((0.25 if tied else 1.0) * rng.standard_normal((V, E))).astype(np.float32),
         p + "embed_positions.weight": vec((cfg["max_position_embeddings"] + 2) * H, 0.25).reshape(-1, H)}
    if E != H:
        w[p + "project_in.weight"] = lin(H, E)
        w[p + "project_out.weight"] = lin(E, H)

    def add_linear(name, out_f, in_f):
        w[name + ".weight"] = lin(out_f, in_f)
        if bias:
            w[name + ".bias"] = vec(out_f, 0.1)

    def add_norm(name, n):
        if affine:
            w[name + ".weight"] = (1.0 + vec(n, 0.1)).astype(np.float32)
            w[name + ".bias"] = vec(n, 0.1)

    for i in range(cfg["num_hidden_layers"]):
        lp = f"{p}layers.{i}."
        for proj in ("k_proj", "v_proj", "q_proj", "out_proj"):
            add_linear(lp + "self_attn." + proj, H, H)
        add_norm(lp + "self_attn_layer_norm", H)
        add_linear(lp + "fc1", F, H)
        add_linear(lp + "fc2", H, F)
        add_norm(lp + "final_layer_norm", H)
    if cfg["do_layer_norm_before"] and not cfg["_remove_final_layer_norm"]:
        add_norm(p + "final_layer_norm", H)
    if not tied:
        w["lm_head.weight"] = (3.0 * lin(V, E)).astype(np.float32)
    return w


def byte_alphabet():
    """GPT-2's printable stand-in for every byte (tokenizers' ByteLevel alphabet)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


def tokenizer_files():
    alphabet = byte_alphabet()
    vocab = {t: i for i, t in enumerate(SPECIALS)}
    for b in range(256):
        vocab[alphabet[b]] = len(vocab)
    space = alphabet[ord(" ")]
    merges = [f"{space} n", f"{space} p"]
    for m in merges:
        vocab[m.replace(" ", "")] = len(vocab)
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, t in enumerate(SPECIALS)]
    tokenizer = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": None, "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                                           "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "vocab": vocab,
                  "merges": merges},
    }
    config = {"bos_token": "</s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>",
              "add_bos_token": False, "model_max_length": 256, "tokenizer_class": "GPT2Tokenizer"}
    return {"tokenizer.json": json.dumps(tokenizer, ensure_ascii=False, indent=1) + "\n",
            "tokenizer_config.json": json.dumps(config, indent=2) + "\n"}


def opt_models():
    """(folder name, config, tensors) of every synthetic OPT checkpoint."""
    out = []
    cfg = opt_config()
    out.append(("tiny-opt", cfg, opt_weights(cfg, seed=11)))
    cfg = opt_config(do_layer_norm_before=False, word_embed_proj_dim=32, num_hidden_layers=3, ffn_dim=96)
    out.append(("tiny-opt-350m", cfg, opt_weights(cfg, seed=12)))
    cfg = opt_config(hidden_size=48, num_attention_heads=3, word_embed_proj_dim=48, ffn_dim=80, enable_bias=False,
                     layer_norm_elementwise_affine=False, tie_word_embeddings=False)
    out.append(("tiny-opt-nobias", cfg, opt_weights(cfg, seed=13)))
    return out
