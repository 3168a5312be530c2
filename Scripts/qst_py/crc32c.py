"""CRC-32C (Castagnoli) in NumPy, written from its definition for the spec-only container reader."""
import numpy as np


# CRC-32C. The register update is linear over GF(2), so large buffers are split into equal
# lanes whose CRCs are computed side by side with NumPy and then chained with the
# "append L zero bytes" operator (zlib's crc32_combine idea).

_POLY = 0x82F63B78


def _make_table():
    table = []
    for b in range(256):
        c = b
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _make_table()
_TABLE_NP = np.array(_TABLE, dtype=np.uint32)


def _crc_raw_bytes(reg, data):
    t = _TABLE
    for b in data:
        reg = t[(reg ^ b) & 0xFF] ^ (reg >> 8)
    return reg


def _gf2_apply(mat, vec):
    out = 0
    i = 0
    while vec:
        if vec & 1:
            out ^= mat[i]
        vec >>= 1
        i += 1
    return out


def _gf2_mul(a, b):
    return [_gf2_apply(a, col) for col in b]


def _zero_bytes_operator(n):
    """Matrix (32 column images) of feeding n zero bytes to the raw CRC register."""
    one = [_TABLE[(1 << i) & 0xFF] ^ ((1 << i) >> 8) for i in range(32)]
    result = [1 << i for i in range(32)]
    while n:
        if n & 1:
            result = _gf2_mul(one, result)
        one = _gf2_mul(one, one)
        n >>= 1
    return result


def _crc_raw_lanes(reg, buf):
    n = buf.size
    lanes = 1
    while lanes < 8192 and n // (lanes * 2) >= 256:
        lanes *= 2
    length = n // lanes
    body = buf[: lanes * length].reshape(lanes, length).T.copy()  # row i = byte i of every lane
    state = np.zeros(lanes, dtype=np.uint32)
    table = _TABLE_NP
    eight = np.uint32(8)
    for row in body:
        state = table[(state ^ row) & 0xFF] ^ (state >> eight)
    shift = _zero_bytes_operator(length)
    for lane_crc in state.tolist():
        reg = _gf2_apply(shift, reg) ^ lane_crc
    return _crc_raw_bytes(reg, buf[lanes * length:].tobytes())


def crc32c(data, crc=0):
    """CRC-32C of `data` (bytes-like or uint8 array) continuing from a previous result `crc`."""
    buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.reshape(-1)
    reg = crc ^ 0xFFFFFFFF
    if buf.size < 65536:
        reg = _crc_raw_bytes(reg, buf.tobytes())
    else:
        reg = _crc_raw_lanes(reg, buf)
    return reg ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283
