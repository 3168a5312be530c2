#!/usr/bin/env python3
"""bitsandbytes-equivalence of a whole .qst4 container against the Hugging Face folder it came from.

    nf4_container_check.py SOURCE_DIR CONTAINER.qst4 [--only SUBSTRING]

For every tensor of the container (read with the independent Scripts/qst4_reader.py):
  NF4  -> Scripts/nf4_reference.py's nf4_reference(source, block_size, double_quant, dq_block_size)
          must give the container's packed codes, absmax (or absmax_codes, absmax2 and the offset
          bits) exactly, and the reader's decoded absmax and tensor must equal the reference's
          absmax_decoded and dequantized bit for bit;
  BF16 -> the container holds round-to-nearest-even of the source;
  F16  -> the container holds NumPy's (round-to-nearest-even) float16 of the source;
  F32  -> the container holds the source bits.
Tensors present on only one side are mismatches too.

Prints {"tensors_checked": N, "nf4": k, "mismatches": [{tensor, what, first_index}], "seconds": t}
on stdout (first_index: flat element index of the first differing value, -1 when not element-wise);
exit 1 on any mismatch, 2 on unreadable input.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qst_py.venv import ensure_venv  # noqa: E402

ensure_venv(("numpy",))

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import nf4_reference  # noqa: E402
from qst4_reader import QST4, QST4Error  # noqa: E402
from qst_py import safetensors_np as st  # noqa: E402


def first_difference(got, want):
    """Flat index of the first element whose bytes differ, None when equal, -1 on a size mismatch."""
    got, want = np.ascontiguousarray(got).reshape(-1), np.ascontiguousarray(want).reshape(-1)
    if got.size != want.size or got.dtype.itemsize != want.dtype.itemsize:
        return -1
    bits = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[got.dtype.itemsize]
    diff = np.flatnonzero(got.view(bits) != want.view(bits))
    return int(diff[0]) if diff.size else None


def check_nf4(reader, name, x):
    e = reader.entry(name)
    ref = nf4_reference.nf4_reference(x, e["block_size"], e["double_quant"], e.get("dq_block_size", 256))
    parts = reader.raw_parts(name)
    out = []

    def cmp(what, got, want, to_element=lambda i: i):
        i = first_difference(got, want)
        if i is not None:
            out.append({"tensor": name, "what": what, "first_index": to_element(i) if i >= 0 else -1})

    # a differing code byte j holds elements 2j (high nibble) and 2j+1 (low nibble)
    codes_ok = first_difference(parts["codes"], ref["codes"])
    if codes_ok is not None:
        j = codes_ok
        elem = -1 if j < 0 else 2 * j + int((parts["codes"][j] >> 4) == (ref["codes"][j] >> 4))
        out.append({"tensor": name, "what": "codes", "first_index": elem})
    if e["double_quant"]:
        cmp("absmax_codes", parts["absmax_codes"], ref["absmax_codes"])
        cmp("absmax2", parts["absmax2"], ref["absmax2"])
        want_bits = int(ref["offset"].view(np.uint32)[0])
        if e["dq_offset_bits"] != want_bits:
            out.append({"tensor": name, "what": f"dq_offset_bits {e['dq_offset_bits']} != {want_bits}",
                        "first_index": -1})
    else:
        cmp("absmax", parts["absmax"], ref["absmax"])
    cmp("decoded_absmax", reader.decoded_absmax(name), ref["absmax_decoded"])
    cmp("dequantized", reader.tensor(name), ref["dequantized"])
    return out


def check_kept(reader, name, x):
    dtype = reader.entry(name)["dtype"]
    data = reader.raw_parts(name)["data"]
    if dtype == "BF16":
        want = st.f32_to_bf16_bits(x)
    elif dtype == "F16":
        want = x.astype(np.float16)
    else:
        want = x.astype(np.float32)
    i = first_difference(data, want)
    if i is None:
        i = first_difference(reader.tensor(name), want.astype(np.float32) if dtype != "BF16"
                             else st.bf16_bits_to_f32(want))
    return [] if i is None else [{"tensor": name, "what": f"{dtype} values", "first_index": i}]


def run(source_dir, container, only=None):
    start = time.perf_counter()
    reader = QST4(container)
    source = st.load_hf_weights(source_dir)
    mismatches, checked, nf4 = [], 0, 0
    names = [n for n in reader.tensor_names() if only is None or only in n]
    for name in names:
        if name not in source:
            mismatches.append({"tensor": name, "what": "not in the source folder", "first_index": -1})
            continue
        x = np.asarray(source[name], dtype=np.float32)
        shape = reader.entry(name)["shape"]
        if list(x.shape) != shape:
            mismatches.append({"tensor": name, "what": f"shape {shape} != source {list(x.shape)}",
                               "first_index": -1})
            continue
        checked += 1
        if reader.entry(name)["dtype"] == "NF4":
            nf4 += 1
            mismatches += check_nf4(reader, name, x)
        else:
            mismatches += check_kept(reader, name, x)
    if only is None:
        for name in sorted(set(source) - set(reader.tensor_names())):
            mismatches.append({"tensor": name, "what": "in the source folder but not in the container",
                               "first_index": -1})
    return {"tensors_checked": checked, "nf4": nf4, "mismatches": mismatches,
            "seconds": round(time.perf_counter() - start, 2)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source_dir")
    ap.add_argument("container")
    ap.add_argument("--only", help="check only tensors whose name contains this")
    args = ap.parse_args(argv)
    try:
        summary = run(args.source_dir, args.container, args.only)
    except (QST4Error, OSError, ValueError) as e:
        print(f"nf4_container_check: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=1))
    return 1 if summary["mismatches"] else 0


if __name__ == "__main__":
    sys.exit(main())
