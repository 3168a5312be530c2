"""The `.qst4` container read with NumPy, written from Formats/QST4.md alone (Scripts/qst4_reader.py is its
command line and documents the API). It shares no code with the Swift reader."""
import hashlib
import json
import os
import shutil
import struct
import subprocess

import numpy as np

from .crc32c import crc32c

F32 = np.float32

MAGIC = b"QST4\r\n\x1a\n"
PREAMBLE = struct.Struct("<8sHHIQQQI20s")
MAX_HEADER = 100 * 1024 * 1024
PART_ALIGN = 64
DTYPES = ("NF4", "BF16", "F16", "F32")
ELEM_BYTES = {"BF16": 2, "F16": 2, "F32": 4}

# §4, as float32. The decimal strings are float32 values printed as doubles, so float() is exact.
_NF4_DECIMAL = np.array([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0], dtype=np.float64)
NF4 = _NF4_DECIMAL.astype(F32)
assert np.all(NF4.astype(np.float64) == _NF4_DECIMAL)  # each literal is exactly a float32

_DYN8_HEX = """
bf7e3333 bf7a999a bf770000 bf736666 bf6fcccd bf6c3333 bf68999a bf650000
bf616666 bf5dcccd bf5a3333 bf56999a bf530000 bf4f6666 bf4bcccd bf483333
bf44999a bf410000 bf3d6666 bf39cccd bf363334 bf32999a bf2f0000 bf2b6666
bf27cccd bf243334 bf20999a bf1d0000 bf196666 bf15cccd bf123334 bf0e999a
bf0b0000 bf076666 bf03cccc bf003333 bef93332 bef20000 beeacccc bee3999a
bedc6666 bed53333 bece0000 bec6cccc bebf999a beb86666 beb13333 beaa0000
bea2cccc be9b999a be946666 be8d3334 be860000 be7d9999 be6f3333 be60cccd
be526666 be440000 be35999a be273333 be18cccd be0a6666 bdf80000 bddb3334
bdc9eb85 bdc428f7 bdbe6667 bdb8a3d7 bdb2e148 bdad1eb8 bda75c2a bda1999a
bd9bd70a bd96147b bd9051eb bd8a8f5d bd84cccd bd7e147b bd728f5d bd670a3d
bd5b851f bd500000 bd447ae1 bd38f5c3 bd2d70a3 bd21eb85 bd166667 bd0ae148
bcfeb852 bce7ae15 bcd0a3d7 bcb9999a bca28f5d bc8b851f bc68f5c3 bc3ae148
bc1f3b64 bc160418 bc0ccccd bc039581 bbf4bc6a bbe24dd3 bbcfdf3b bbbd70a4
bbab020d bb989374 bb8624dd bb676c8a bb428f5c bb1db22d baf1a9fc baa7ef9d
ba7765ff ba59e83e ba3c6a80 ba1eecc1 ba016f01 b9c7e283 b98ce705 b923d70b
b8ba1f4b b88aefb3 b8378034 b7b24206 b70205ff b65a1a94 b513a3b7 00000000
3513a3b7 365a1a94 370205ff 37b24206 38378034 388aefb3 38ba1f4b 3923d70b
398ce705 39c7e283 3a016f01 3a1eecc1 3a3c6a80 3a59e83e 3a7765ff 3aa7ef9d
3af1a9fc 3b1db22d 3b428f5c 3b676c8a 3b8624dd 3b989374 3bab020d 3bbd70a4
3bcfdf3b 3be24dd3 3bf4bc6a 3c039581 3c0ccccd 3c160418 3c1f3b64 3c3ae148
3c68f5c3 3c8b851f 3ca28f5d 3cb9999a 3cd0a3d7 3ce7ae15 3cfeb852 3d0ae148
3d166667 3d21eb85 3d2d70a3 3d38f5c3 3d447ae1 3d500000 3d5b851f 3d670a3d
3d728f5d 3d7e147b 3d84cccd 3d8a8f5d 3d9051eb 3d96147b 3d9bd70a 3da1999a
3da75c2a 3dad1eb8 3db2e148 3db8a3d7 3dbe6667 3dc428f7 3dc9eb85 3ddb3334
3df80000 3e0a6666 3e18cccd 3e273333 3e35999a 3e440000 3e526666 3e60cccd
3e6f3333 3e7d9999 3e860000 3e8d3334 3e946666 3e9b999a 3ea2cccc 3eaa0000
3eb13333 3eb86666 3ebf999a 3ec6cccc 3ece0000 3ed53333 3edc6666 3ee3999a
3eeacccc 3ef20000 3ef93332 3f003333 3f03cccc 3f076666 3f0b0000 3f0e999a
3f123334 3f15cccd 3f196666 3f1d0000 3f20999a 3f243334 3f27cccd 3f2b6666
3f2f0000 3f32999a 3f363334 3f39cccd 3f3d6666 3f410000 3f44999a 3f483333
3f4bcccd 3f4f6666 3f530000 3f56999a 3f5a3333 3f5dcccd 3f616666 3f650000
3f68999a 3f6c3333 3f6fcccd 3f736666 3f770000 3f7a999a 3f7e3333 3f800000
"""
DYN8 = np.array([int(h, 16) for h in _DYN8_HEX.split()], dtype=np.uint32).view(F32)
assert DYN8.size == 256


class QST4Error(Exception):
    """A malformed container; the message names the file and the field."""

# ---------------------------------------------------------------------------------------------

def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _zstd_decompress(blob, raw_length, where):
    try:
        import zstandard  # optional; the zstd command-line tool is the fallback
        return zstandard.ZstdDecompressor().decompress(blob, max_output_size=raw_length)
    except ImportError:
        pass
    tool = shutil.which("zstd")
    if tool is None:
        raise QST4Error(f"{where}: needs the `zstandard` package or the `zstd` tool to decompress")
    proc = subprocess.run([tool, "-d", "-c", "-q"], input=blob, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        raise QST4Error(f"{where}: zstd failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


class QST4:
    def __init__(self, path):
        self.path = path
        self._mm = None
        size = os.path.getsize(path)
        if size < PREAMBLE.size:
            raise QST4Error(f"{path}: {size} bytes, shorter than the 64-byte preamble")
        with open(path, "rb") as f:
            pre = f.read(PREAMBLE.size)
            (magic, major, minor, align, data_off, hdr_off, hdr_len, hdr_crc, _reserved) = PREAMBLE.unpack(pre)
            if magic != MAGIC:
                raise QST4Error(f"{path}: bad magic {magic!r}")
            if major != 1:
                raise QST4Error(f"{path}: major version {major} (this reader reads 1)")
            if align < 4096 or align & (align - 1):
                raise QST4Error(f"{path}: alignment {align} is not a power of two >= 4096")
            if hdr_len > MAX_HEADER:
                raise QST4Error(f"{path}: header_length {hdr_len} exceeds 100 MiB")
            if hdr_off > size or hdr_off + hdr_len != size:
                raise QST4Error(f"{path}: header range {hdr_off}+{hdr_len} does not end at the file size {size}")
            if data_off % align or data_off < PREAMBLE.size or data_off > hdr_off:
                raise QST4Error(f"{path}: data_offset {data_off} not aligned to {align} or not in [64, header_offset]")
            f.seek(hdr_off)
            raw = f.read(hdr_len)
        if crc32c(raw) != hdr_crc:
            raise QST4Error(f"{path}: header crc32c {crc32c(raw):#010x} != preamble {hdr_crc:#010x}")
        self.version = (major, minor)
        self.alignment = align
        self.data_offset = data_off
        self.header_offset = hdr_off
        try:
            self.header = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise QST4Error(f"{path}: header is not UTF-8 JSON: {e}") from None
        self._validate()
        self._mm = np.memmap(path, dtype=np.uint8, mode="r") if size else None

    # -- validation (§6) ---------------------------------------------------------------------

    def _range(self, rng, where, align=None):
        if not isinstance(rng, dict) or not _is_int(rng.get("offset")) or not _is_int(rng.get("length")):
            raise QST4Error(f"{self.path}: {where}: needs integer offset and length")
        off, length = rng["offset"], rng["length"]
        if off < self.data_offset or length < 0 or off + length > self.header_offset:
            raise QST4Error(f"{self.path}: {where}: range {off}+{length} outside the data section "
                            f"[{self.data_offset}, {self.header_offset})")
        if align and off % align:
            raise QST4Error(f"{self.path}: {where}: offset {off} not a multiple of {align}")
        return off, length

    def _validate(self):
        h, p = self.header, self.path
        if not isinstance(h, dict) or h.get("format") != "qst4":
            raise QST4Error(f"{p}: header is not an object with format \"qst4\"")
        self._entries = {}
        self._order = {}
        ranges = []  # (offset, length, label) of every part and file, to check for overlaps
        tensors = h.get("tensors")
        if not isinstance(tensors, list):
            raise QST4Error(f"{p}: header field tensors is not a list")
        for i, t in enumerate(tensors):
            name = t.get("name") if isinstance(t, dict) else None
            if not isinstance(name, str):
                raise QST4Error(f"{p}: tensors[{i}] has no name")
            if name in self._entries:
                raise QST4Error(f"{p}: tensor {name}: duplicate name")
            self._entries[name] = t
            for off, length, part in self._validate_tensor(t):
                ranges.append((off, length, f"tensor {name} part {part}"))
        self._files = {}
        for i, fe in enumerate(h.get("files", [])):
            name = fe.get("name") if isinstance(fe, dict) else None
            if not isinstance(name, str) or name in self._files:
                raise QST4Error(f"{p}: files[{i}]: missing or duplicate name")
            where = f"file {name}"
            off, length = self._range(fe, where)
            if fe.get("compression") not in ("zstd", "none"):
                raise QST4Error(f"{p}: {where}: unknown compression {fe.get('compression')!r}")
            raw_len = fe.get("raw_length")
            if not _is_int(raw_len) or raw_len < 0 or (fe["compression"] == "none" and raw_len != length):
                raise QST4Error(f"{p}: {where}: bad raw_length {raw_len!r}")
            sha = fe.get("sha256")
            if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdefABCDEF" for c in sha):
                raise QST4Error(f"{p}: {where}: sha256 is not 64 hex digits")
            self._files[name] = fe
            ranges.append((off, length, where))
        ranges.sort()
        for (o1, l1, a), (o2, _l2, b) in zip(ranges, ranges[1:]):
            if o1 + l1 > o2:
                raise QST4Error(f"{p}: {a} overlaps {b}")
        self._validate_layers()

    def _validate_tensor(self, t):
        p, name = self.path, t["name"]
        where = f"tensor {name}"
        dtype = t.get("dtype")
        if dtype not in DTYPES:
            raise QST4Error(f"{p}: {where}: unknown dtype {dtype!r}")
        shape = t.get("shape")
        if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
            raise QST4Error(f"{p}: {where}: shape {shape!r} is not a list of non-negative integers")
        n = 1
        for d in shape:
            n *= d
        if n >= 1 << 63:
            raise QST4Error(f"{p}: {where}: shape {shape} overflows 64 bits")
        layer = t.get("layer")
        if not _is_int(layer) or layer < -1:
            raise QST4Error(f"{p}: {where}: layer {layer!r} is not an integer >= -1")
        parts = t.get("parts")
        if not isinstance(parts, dict):
            raise QST4Error(f"{p}: {where}: parts is not an object")
        if not _is_int(t.get("crc32c")) or not 0 <= t["crc32c"] < 1 << 32:
            raise QST4Error(f"{p}: {where}: crc32c is not a uint32")
        if dtype == "NF4":
            bs = t.get("block_size")
            if not _is_int(bs) or bs < 32 or bs > 4096 or bs & (bs - 1):
                raise QST4Error(f"{p}: {where}: block_size {bs!r} is not a power of two in 32...4096")
            dq = t.get("double_quant")
            if not isinstance(dq, bool):
                raise QST4Error(f"{p}: {where}: double_quant is not a boolean")
            blocks = -(-n // bs)
            want = {"codes": (n + 1) // 2}
            if dq:
                dqb = t.get("dq_block_size")
                if not _is_int(dqb) or dqb < 1:
                    raise QST4Error(f"{p}: {where}: dq_block_size {dqb!r} is not a positive integer")
                bits = t.get("dq_offset_bits")
                if not _is_int(bits) or not 0 <= bits < 1 << 32:
                    raise QST4Error(f"{p}: {where}: dq_offset_bits {bits!r} is not a uint32")
                want["absmax_codes"] = blocks
                want["absmax2"] = 4 * -(-blocks // dqb)
            else:
                want["absmax"] = 4 * blocks
        else:
            want = {"data": ELEM_BYTES[dtype] * n}
        out = []
        for part, length in want.items():
            if part not in parts:
                raise QST4Error(f"{p}: {where}: missing part {part}")
            off, got = self._range(parts[part], f"{where} part {part}", align=PART_ALIGN)
            if got != length:
                raise QST4Error(f"{p}: {where} part {part}: length {got}, expected {length} for shape {shape}")
            out.append((off, got, part))
        self._order[name] = list(want)  # the part order of §4, which the crc32c follows
        return out

    def _validate_layers(self):
        p = self.path
        self._layers = {}
        for i, lr in enumerate(self.header.get("layers", [])):
            idx = lr.get("index") if isinstance(lr, dict) else None
            if not _is_int(idx) or idx < 0 or idx in self._layers:
                raise QST4Error(f"{p}: layers[{i}]: missing or duplicate index")
            self._layers[idx] = self._range(lr, f"layer {idx}", align=self.alignment)
        for name, t in self._entries.items():
            layer = t["layer"]
            named = _layer_from_name(name)
            if named is not None and named != layer:
                raise QST4Error(f"{p}: tensor {name}: layer {layer} but its name says layer {named}")
            if layer < 0:
                continue
            if layer not in self._layers:
                raise QST4Error(f"{p}: tensor {name}: layer {layer} has no entry in layers")
            lo, length = self._layers[layer]
            for part in self._order[name]:
                r = t["parts"][part]
                if r["offset"] < lo or r["offset"] + r["length"] > lo + length:
                    raise QST4Error(f"{p}: tensor {name} part {part}: outside layer {layer}'s range")

    # -- access ------------------------------------------------------------------------------

    def tensor_names(self):
        return list(self._entries)

    def entry(self, name):
        if name not in self._entries:
            raise KeyError(f"{self.path}: no tensor {name}")
        return self._entries[name]

    def file_names(self):
        return list(self._files)

    def _bytes(self, rng):
        return self._mm[rng["offset"]: rng["offset"] + rng["length"]]

    def raw_parts(self, name):
        t = self.entry(name)
        dt = {"codes": np.uint8, "absmax_codes": np.uint8, "absmax": "<f4", "absmax2": "<f4",
              "data": {"F32": "<f4", "F16": "<f2", "BF16": "<u2"}.get(t["dtype"])}
        return {part: self._bytes(t["parts"][part]).view(dt[part]) for part in self._order[name]}

    def decoded_absmax(self, name):
        t = self.entry(name)
        if t["dtype"] != "NF4":
            raise QST4Error(f"{self.path}: tensor {name}: dtype {t['dtype']} has no absmax")
        parts = self.raw_parts(name)
        if not t["double_quant"]:
            return np.array(parts["absmax"], dtype=F32)
        codes = parts["absmax_codes"]
        scale = np.repeat(parts["absmax2"].astype(F32), t["dq_block_size"])[: codes.size]
        offset = np.array([t["dq_offset_bits"]], dtype=np.uint32).view(F32)[0]
        product = (DYN8[codes] * scale).astype(F32)  # rounded to float32 before the offset is added
        return (product + offset).astype(F32)

    def tensor(self, name):
        t = self.entry(name)
        shape = tuple(t["shape"])
        parts = self.raw_parts(name)
        dtype = t["dtype"]
        if dtype == "F32":
            return np.array(parts["data"], dtype=F32).reshape(shape)
        if dtype == "F16":
            return parts["data"].astype(F32).reshape(shape)
        if dtype == "BF16":
            return (parts["data"].astype(np.uint32) << np.uint32(16)).view(F32).reshape(shape)
        n = int(np.prod(shape, dtype=np.int64)) if shape else 1
        packed = parts["codes"]
        codes = np.empty(packed.size * 2, dtype=np.uint8)
        codes[0::2] = packed >> 4
        codes[1::2] = packed & 0x0F
        absmax = np.repeat(self.decoded_absmax(name), t["block_size"])[:n]
        return (NF4[codes[:n]] * absmax).astype(F32).reshape(shape)

    def file(self, name):
        if name not in self._files:
            raise QST4Error(f"{self.path}: no embedded file {name}")
        fe = self._files[name]
        blob = self._bytes(fe).tobytes()
        where = f"{self.path}: file {name}"
        data = _zstd_decompress(blob, fe["raw_length"], where) if fe["compression"] == "zstd" else blob
        if len(data) != fe["raw_length"]:
            raise QST4Error(f"{where}: {len(data)} bytes after decompression, raw_length says {fe['raw_length']}")
        if hashlib.sha256(data).hexdigest() != fe["sha256"].lower():
            raise QST4Error(f"{where}: sha256 mismatch")
        return data

    def config(self):
        try:
            return json.loads(self.file("config.json").decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise QST4Error(f"{self.path}: file config.json is not JSON: {e}") from None

    def tensor_crc(self, name):
        t = self._entries[name]
        crc = 0
        for part in self._order[name]:
            crc = crc32c(self._bytes(t["parts"][part]), crc)
        return crc

    def verify(self):
        """Checksums of every tensor and file, and zero bytes between the ranges (§5)."""
        problems = []
        for name, t in self._entries.items():
            got = self.tensor_crc(name)
            if got != t["crc32c"]:
                problems.append(f"tensor {name}: crc32c {got:#010x} != header {t['crc32c']:#010x}")
        for name in self._files:
            try:
                self.file(name)
            except QST4Error as e:
                problems.append(str(e))
        used = sorted([(t["parts"][q]["offset"], t["parts"][q]["length"])
                       for name, t in self._entries.items() for q in self._order[name]]
                      + [(f["offset"], f["length"]) for f in self._files.values()]
                      # §9: a data section owns its range (its own checks are the section's).
                      + [(sec["data"]["offset"], sec["data"]["length"])
                         for sec in (self.header.get("sections") or {}).values()
                         if isinstance(sec, dict) and isinstance(sec.get("data"), dict)])
        pos = PREAMBLE.size
        for off, length in used + [(self.header_offset, 0)]:
            if off > pos and np.any(self._mm[pos:off]):
                problems.append(f"non-zero bytes in the gap [{pos}, {off})")
            pos = max(pos, off + length)
        return problems


def _layer_from_name(name):
    """i if the name contains `layers.{i}.` (§3), else None."""
    key = "layers."
    start = name.find(key)
    while start >= 0:
        rest = name[start + len(key):]
        digits = len(rest) - len(rest.lstrip("0123456789"))
        if digits and rest[digits:digits + 1] == ".":
            return int(rest[:digits])
        start = name.find(key, start + 1)
    return None
