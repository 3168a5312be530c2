#!/usr/bin/env python3
"""The llama.cpp side of Scripts/bench-quality (project venv: numpy).

  bench_quality.py ggml-quant MIX HF_F32_DIR OUT_DIR GGML_QUANTIZE [IMPORTANCE.safetensors]
      Without a built llama-quantize: the block linears quantized by ggml's own quantizers (Scripts/ggml_quantize.c
      linked against ggml of the same llama.cpp source) with llama-quantize's type choice for MIX (Q4_0, Q4_K_M,
      IQ4_NL, IQ4_XS) as llama-quant.cpp states it for this model (attn_v/ffn_down promotions by use_more_bits,
      fallbacks for rows that are not a multiple of 256), weighted by the importance file when given (mean squared
      input per channel, what llama-imatrix collects; written by `qst-quantize --save-importance`), then
      dequantized into a copy of the HF folder (other tensors unchanged F32, side files copied).
      Prints a JSON line: bits per weight over those linears and the count of each ggml type.
"""
import json
import os
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qst_py import safetensors_np as st  # noqa: E402

LINEARS = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
           "mlp.up_proj", "mlp.down_proj"}
SIDE_FILES = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"]
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
    if len(argv) in (5, 6) and argv[0] == "ggml-quant":
        ggml_quant(*argv[1:])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
