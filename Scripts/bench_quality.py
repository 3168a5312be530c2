#!/usr/bin/env python3
"""Helpers of Scripts/bench-quality (llama.cpp side), with the project venv's gguf, numpy and safetensors.

  bench_quality.py make-gguf HF_F32_DIR METADATA.gguf OUT.gguf
      An F32 GGUF of the Hugging Face model: the key/values (hyper-parameters, tokenizer) are copied from a GGUF of
      the same model (the fetched Q4_1 file), the tensors taken from the safetensors in F32, named and permuted as
      llama.cpp's converter does (q/k rows reordered for its rotary layout).
  bench_quality.py to-safetensors QUANT.gguf HF_F32_DIR OUT_DIR
      The block linears of a llama.cpp-quantized GGUF dequantized back (gguf-py's reference dequantizers, the
      permutation undone) into a copy of the HF folder whose other tensors stay the original F32, so that
      `qst-eval compare` measures every format's weight error with the same evaluator on the same tokens.
      Prints a JSON line: bits per weight over those linears and the count of each quantization type.
  bench_quality.py ggml-quant MIX HF_F32_DIR OUT_DIR GGML_QUANTIZE [IMPORTANCE.safetensors]
      Without a built llama-quantize: the block linears quantized by ggml's own quantizers (Scripts/ggml_quantize.c
      linked against ggml of the same llama.cpp source) with llama-quantize's type choice for MIX (Q4_0, Q4_K_M,
      IQ4_NL, IQ4_XS) as llama-quant.cpp states it for this model (attn_v/ffn_down promotions by use_more_bits,
      fallbacks for rows that are not a multiple of 256), weighted by the importance file when given (mean squared
      input per channel, what llama-imatrix collects; written by `qst-quantize --save-importance`), then
      dequantized into a copy of the HF folder as `to-safetensors` does. Same JSON line.
"""
import json
import os
import shutil
import sys

import gguf
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qst_py import safetensors_np as st  # noqa: E402

LINEARS = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
           "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
           "mlp.down_proj": "ffn_down"}
NORMS = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}
SIDE_FILES = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"]


def heads(config):
    return config["num_attention_heads"], config.get("num_key_value_heads", config["num_attention_heads"])


def permute(w, n_head):
    """HF (rotate-half) row order → llama.cpp's interleaved order, as convert_hf_to_gguf.py does."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute(w, n_head):
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_name(hf):
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    parts = hf.split(".")
    i, rest = parts[2], ".".join(parts[3:-1])
    short = LINEARS.get(rest) or NORMS.get(rest)
    if short is None:
        raise SystemExit(f"{hf}: no GGUF name known")
    return f"blk.{i}.{short}.weight"


def make_gguf(hf_dir, meta_path, out):
    config = json.load(open(os.path.join(hf_dir, "config.json")))
    n_head, n_kv = heads(config)
    reader = gguf.GGUFReader(meta_path)
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(out, arch)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name in ("general.architecture", "general.file_type",
                                                "general.quantization_version"):
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(name, field.contents(), vtype, sub_type=sub)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    tensors = st.load_hf_weights(hf_dir)
    for hf, w in tensors.items():
        w = w.astype(np.float32)
        if hf.endswith("self_attn.q_proj.weight"):
            w = permute(w, n_head)
        elif hf.endswith("self_attn.k_proj.weight"):
            w = permute(w, n_kv)
        writer.add_tensor(gguf_name(hf), np.ascontiguousarray(w))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def to_safetensors(quant, hf_dir, out_dir):
    config = json.load(open(os.path.join(hf_dir, "config.json")))
    n_head, n_kv = heads(config)
    reader = gguf.GGUFReader(quant)
    by_name = {t.name: t for t in reader.tensors}
    tensors = st.load_hf_weights(hf_dir)
    bits, count, types = 0, 0, {}
    for hf in list(tensors):
        rest = ".".join(hf.split(".")[3:-1])
        if not hf.startswith("model.layers.") or rest not in LINEARS:
            continue
        t = by_name[gguf_name(hf)]
        w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(tensors[hf].shape)
        if rest == "self_attn.q_proj":
            w = unpermute(w, n_head)
        elif rest == "self_attn.k_proj":
            w = unpermute(w, n_kv)
        tensors[hf] = np.ascontiguousarray(w)
        bits += int(t.n_bytes) * 8
        count += int(t.n_elements)
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    os.makedirs(out_dir, exist_ok=True)
    st.save(os.path.join(out_dir, "model.safetensors"), tensors)
    for f in SIDE_FILES:
        if os.path.exists(os.path.join(hf_dir, f)):
            shutil.copy(os.path.join(hf_dir, f), out_dir)
    print(json.dumps({"bpw": bits / count, "types": types}))


GGML_BLOCK = {"q4_0": 32, "q4_1": 32, "q5_0": 32, "q5_1": 32, "q8_0": 32, "iq4_nl": 32,
              "q4_K": 256, "q5_K": 256, "q6_K": 256, "iq4_xs": 256}
GGML_FALLBACK = {"iq4_xs": "iq4_nl", "q4_K": "q5_0", "q5_K": "q5_1", "q6_K": "q8_0"}
GGML_BASE = {"Q4_0": "q4_0", "Q4_K_M": "q4_K", "IQ4_NL": "iq4_nl", "IQ4_XS": "iq4_xs"}


def use_more_bits(i, n):
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def ggml_type_for(mix, linear, layer, layers, cols, has_imatrix):
    """llama-quantize's choice for a block linear of a non-MoE llama model with n_gqa < 4 (llama-quant.cpp)."""
    t = GGML_BASE[mix]
    if linear == "self_attn.v_proj" and mix == "Q4_K_M" and use_more_bits(layer, layers):
        t = "q6_K"
    if linear == "mlp.down_proj":
        if mix == "Q4_K_M" and use_more_bits(layer, layers):
            t = "q6_K"
        elif mix in ("IQ4_NL", "IQ4_XS") and layer < layers // 8 and not has_imatrix:
            t = "q5_K"
        elif mix == "Q4_0" and has_imatrix and layer < layers // 8:
            t = "q4_1"
    if cols % GGML_BLOCK[t]:
        t = GGML_FALLBACK[t]
    return t


def ggml_quant(mix, hf_dir, out_dir, tool, importance=None):
    import subprocess
    import tempfile
    config = json.load(open(os.path.join(hf_dir, "config.json")))
    layers = config["num_hidden_layers"]
    imp = st.load(importance) if importance else {}
    tensors = st.load_hf_weights(hf_dir)
    bits, count, types = 0, 0, {}
    with tempfile.TemporaryDirectory() as tmp:
        src, dst, ip = (os.path.join(tmp, n) for n in ("x.f32", "y.f32", "imp.f32"))
        for hf in list(tensors):
            parts = hf.split(".")
            rest = ".".join(parts[3:-1])
            if not hf.startswith("model.layers.") or rest not in LINEARS:
                continue
            w = np.ascontiguousarray(tensors[hf], dtype=np.float32)
            rows, cols = w.shape
            has = hf in imp
            t = ggml_type_for(mix, rest, int(parts[2]), layers, cols, has)
            w.tofile(src)
            args = [tool, t, str(rows), str(cols), src, dst]
            if has:
                np.ascontiguousarray(imp[hf], dtype=np.float32).tofile(ip)
                args.append(ip)
            nbytes = int(subprocess.run(args, check=True, capture_output=True, text=True).stdout)
            tensors[hf] = np.fromfile(dst, dtype=np.float32).reshape(rows, cols)
            bits += nbytes * 8
            count += rows * cols
            types[t] = types.get(t, 0) + 1
    os.makedirs(out_dir, exist_ok=True)
    st.save(os.path.join(out_dir, "model.safetensors"), tensors)
    for f in SIDE_FILES:
        if os.path.exists(os.path.join(hf_dir, f)):
            shutil.copy(os.path.join(hf_dir, f), out_dir)
    print(json.dumps({"bpw": bits / count, "types": types}))


def main(argv):
    if len(argv) == 4 and argv[0] == "make-gguf":
        make_gguf(*argv[1:])
    elif len(argv) == 4 and argv[0] == "to-safetensors":
        to_safetensors(*argv[1:])
    elif len(argv) in (5, 6) and argv[0] == "ggml-quant":
        ggml_quant(*argv[1:])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
