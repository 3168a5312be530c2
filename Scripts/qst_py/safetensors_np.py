"""Minimal safetensors reader/writer in pure NumPy (no torch, no `safetensors` package).

File layout (https://github.com/huggingface/safetensors): u64 little-endian header length N,
N bytes of JSON {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}},
then the raw little-endian tensor bytes; offsets are relative to the end of the header.

API:
  read_header(path) -> (header_dict_without_metadata, metadata_dict, data_start)
  load(path, names=None, as_float32=True) -> {name: np.ndarray}
      BF16 is widened to float32 (exactly); F16 -> float32 too when as_float32.
  load_hf_weights(folder) -> {name: np.ndarray}   model.safetensors or model.safetensors.index.json shards
  save(path, tensors: dict[str, np.ndarray | BF16Array], metadata=None)
      insertion order is kept; header padded with spaces to 8 bytes.
  f32_to_bf16_bits(a) -> uint16 array, round-to-nearest-even (NaN stays NaN)
  bf16_bits_to_f32(u16) -> float32 array
  BF16Array(bits_u16) -- wrapper marking a uint16 array as BF16 for save()
"""
import json
import os
import struct

import numpy as np

_NP_OF = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U8": np.dtype("u1"), "BOOL": np.dtype("?"), "BF16": np.dtype("<u2"),
}
_ST_OF = {np.dtype(v).str: k for k, v in _NP_OF.items() if k != "BF16"}


class BF16Array:
    """A uint16 array holding bfloat16 bit patterns, so save() writes dtype "BF16"."""

    def __init__(self, bits):
        bits = np.asarray(bits)
        if bits.dtype != np.uint16:
            raise TypeError("BF16Array needs uint16 bit patterns")
        self.bits = bits
        self.shape = bits.shape


def f32_to_bf16_bits(a) -> np.ndarray:
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    nan = np.isnan(u.view(np.float32))
    # Round half to even on the 16 dropped bits; cannot overflow uint32 for non-NaN inputs.
    rounded = (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    out = rounded.astype(np.uint16)
    if nan.any():
        out[nan] = ((u[nan] >> np.uint32(16)) | np.uint32(0x0040)).astype(np.uint16)
    return out


def bf16_bits_to_f32(bits) -> np.ndarray:
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


def read_header(path):
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path}: too short for a safetensors header")
        (n,) = struct.unpack("<Q", raw)
        size = os.fstat(f.fileno()).st_size
        if n > size - 8 or n > 100 * 1024 * 1024:
            raise ValueError(f"{path}: header length {n} exceeds file size {size}")
        header = json.loads(f.read(n).decode("utf-8"))
    meta = header.pop("__metadata__", None) or {}
    data_start = 8 + n
    for name, info in header.items():
        if info.get("dtype") not in _NP_OF:
            raise ValueError(f"{path}: tensor {name}: unsupported dtype {info.get('dtype')}")
        b, e = info["data_offsets"]
        count = int(np.prod(info["shape"], dtype=np.int64))
        if e - b != count * _NP_OF[info["dtype"]].itemsize or data_start + e > size or b < 0:
            raise ValueError(f"{path}: tensor {name}: data_offsets {b},{e} inconsistent with shape/dtype/file size")
    return header, meta, data_start


def load(path, names=None, as_float32=True):
    header, _, data_start = read_header(path)
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    out = {}
    for name, info in header.items():
        if names is not None and name not in names:
            continue
        b, e = info["data_offsets"]
        dt = info["dtype"]
        arr = mm[data_start + b: data_start + e].view(_NP_OF[dt]).reshape(info["shape"])
        if dt == "BF16":
            arr = bf16_bits_to_f32(arr)
        elif dt == "F16" and as_float32:
            arr = arr.astype(np.float32)
        else:
            arr = np.array(arr)  # detach from the memmap
        out[name] = arr
    return out


def load_hf_weights(folder):
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        tensors = {}
        for shard in sorted(set(weight_map.values())):
            tensors.update(load(os.path.join(folder, shard)))
        missing = set(weight_map) - set(tensors)
        if missing:
            raise ValueError(f"{index}: tensors missing from shards: {sorted(missing)[:5]}")
        return tensors
    single = os.path.join(folder, "model.safetensors")
    if not os.path.exists(single):
        raise FileNotFoundError(f"{folder}: neither model.safetensors nor model.safetensors.index.json")
    return load(single)


def save(path, tensors, metadata=None):
    header = {"__metadata__": dict(metadata or {"format": "pt"})}
    blobs = []
    offset = 0
    for name, t in tensors.items():
        if isinstance(t, BF16Array):
            dt, data, shape = "BF16", np.ascontiguousarray(t.bits, dtype="<u2"), list(t.shape)
        else:
            a = np.asarray(t)
            key = a.dtype.newbyteorder("<").str if a.dtype.byteorder not in ("|",) else a.dtype.str
            if key not in _ST_OF:
                raise TypeError(f"tensor {name}: unsupported dtype {a.dtype}")
            dt, data, shape = _ST_OF[key], np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")), list(a.shape)
        nbytes = data.nbytes
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        blobs.append(data)
        offset += nbytes
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((8 - len(hjson) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for data in blobs:
            f.write(data.tobytes(order="C"))
