#!/usr/bin/env python3
"""Independent NumPy reference for QST's NF4 codec (bitsandbytes / QLoRA semantics).

Written from bitsandbytes' sources (csrc kernels dQuantizeNF4, kQuantizeBlockwise, dQuantize,
dDequantizeNF4, kDequantizeBlockwise; functional.py quantize_4bit, quantize_blockwise,
create_dynamic_map), not from QST's Swift/C code, so tests can hold one against the other.

Semantics reproduced:
  * blocks of `block_size` over the row-major flattened tensor; a partial last block is padded
    with 0.0 (cub BlockLoad's default) and has its own absmax;
  * absmax = max |x| per block (float32); scale = float32(1 / absmax); v = float32(x * scale);
    code = dQuantizeNF4(v), the literal decision tree with strict `>` (ties go low, NaN -> 0).
    An all-zero block gives scale = inf, v = 0 * inf = NaN -> code 0 (value -1.0 * 0 = -0.0);
  * two codes per byte, element 2j in the high nibble; (n+1)//2 bytes;
  * double quantization: offset = mean of absmax, absmax - offset quantized with the signed
    dynamic 8-bit map in blocks of `dq_block_size` (own float32 absmax2 each), code chosen by
    dQuantize<0>'s pivot search; decoded absmax = float32(float32(map[q] * absmax2) + offset);
  * dequantized = float32(NF4[code] * absmax); BF16 = round-to-nearest-even of that float32.

Choices that follow torch's float32 arithmetic (bitsandbytes builds these with torch on CPU):
  * mean: torch's CPU float32 sum (aten SumKernel `cascade_sum`: 8 float32 lanes, 4 interleaved
    rows of vectors, 4 cascade levels of 16, the tail and the lanes added last in order), then
    one float32 division by the count; matches torch 2.15 (AVX2 kernels) on tensors with fewer
    than 32,768 absmax values, where torch sums on one thread;
  * dynamic map: torch.linspace(0.1, 1, n) in float32 (step = f32(f32(1 - f32(0.1)) / (n-1)),
    start + step*k fused for the first half, end - step*(n-1-k) fused for the second), float32
    midpoints, times float32(10**e), each step rounded to float32: equal to bitsandbytes 0.50.2's
    create_dynamic_map(signed=True) bit for bit (checked against ../shared/data/bnb-nf4).

CLI:
  nf4_reference.py quantize INPUT.npy OUTPUT.npz [--block-size 64] [--no-double-quant]
                   [--dq-block-size 256]
      npz fields: codes (u1), absmax (f4, raw per block), absmax_codes (u1), absmax2 (f4),
      offset (f4 scalar array), absmax_decoded (f4, what dequantization uses),
      dequantized (f4), dequantized_bf16 (u2), nf4_code (f4 x16), dynamic_map (f4 x256)
  nf4_reference.py dynamic INPUT.npy OUTPUT.npz [--block-size 256]
      blockwise 8-bit dynamic quantization of arbitrary finite values: codes, absmax,
      dequantized, dynamic_map
Exit status 2 with a message on stderr for non-finite input.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qst_py.venv import ensure_venv  # noqa: E402

ensure_venv(("numpy",))

import argparse  # noqa: E402
from fractions import Fraction  # noqa: E402

import numpy as np  # noqa: E402

F32 = np.float32


def f32_literal(text: str) -> np.float32:
    """The float32 a C compiler makes of the literal `<text>f` (decimal rounded once, ties even)."""
    exact = Fraction(text)
    guess = np.float32(float(text))
    best = None
    for cand in (np.nextafter(guess, F32(-np.inf)), guess, np.nextafter(guess, F32(np.inf))):
        err = abs(Fraction(float(cand)) - exact)
        even = (int(np.array(cand, dtype=F32).view(np.uint32)) & 1) == 0
        key = (err, not even)
        if best is None or key < best[0]:
            best = (key, cand)
    return F32(best[1])


# dDequantizeNF4's values, indexed by code.
NF4_CODE = np.array([f32_literal(s) for s in (
    "-1.0", "-0.6961928009986877", "-0.5250730514526367", "-0.39491748809814453",
    "-0.28444138169288635", "-0.18477343022823334", "-0.09105003625154495", "0.0",
    "0.07958029955625534", "0.16093020141124725", "0.24611230194568634", "0.33791524171829224",
    "0.44070982933044434", "0.5626170039176941", "0.7229568362236023", "1.0")], dtype=F32)

# dQuantizeNF4's split constants, named by the tree path they guard.
T = {k: f32_literal(v) for k, v in {
    "root": "0.03979014977812767",
    "1": "0.3893125355243683", "11": "0.6427869200706482", "111": "0.8614784181118011",
    "110": "0.5016634166240692", "10": "0.2035212516784668", "101": "0.2920137718319893",
    "100": "0.1202552504837513",
    "0": "-0.33967943489551544", "01": "-0.13791173323988914", "011": "-0.045525018125772476",
    "010": "-0.23460740596055984", "00": "-0.6106329262256622", "001": "-0.4599952697753906",
    "000": "-0.8480964004993439",
}.items()}


def nf4_tree(x: np.ndarray) -> np.ndarray:
    """dQuantizeNF4, branch by branch (np.where keeps the `x > t` semantics, NaN is never >)."""
    def leaf2(key, hi, lo):
        return np.where(x > T[key], hi, lo)

    pos = np.where(x > T["1"],
                   np.where(x > T["11"], leaf2("111", 0b1111, 0b1110), leaf2("110", 0b1101, 0b1100)),
                   np.where(x > T["10"], leaf2("101", 0b1011, 0b1010), leaf2("100", 0b1001, 0b1000)))
    neg = np.where(x > T["0"],
                   np.where(x > T["01"], leaf2("011", 0b0111, 0b0110), leaf2("010", 0b0101, 0b0100)),
                   np.where(x > T["00"], leaf2("001", 0b0011, 0b0010), leaf2("000", 0b0001, 0b0000)))
    return np.where(x > T["root"], pos, neg).astype(np.uint8)


def fma_f32(a, b, c) -> np.float32:
    """float32(a*b + c) rounded once (a fused multiply-add), exact via fractions."""
    exact = Fraction(float(F32(a))) * Fraction(float(F32(b))) + Fraction(float(F32(c)))
    guess = F32(float(exact))
    best = None
    for cand in (np.nextafter(guess, F32(-np.inf)), guess, np.nextafter(guess, F32(np.inf))):
        key = (abs(Fraction(float(cand)) - exact), int(np.array(cand, dtype=F32).view(np.uint32)) & 1)
        if best is None or key < best[0]:
            best = (key, cand)
    return F32(best[1])


def torch_linspace_f32(start: float, end: float, steps: int) -> np.ndarray:
    """torch.linspace(start, end, steps) for float32 on CPU (RangeFactoriesKernel, scalar path
    compiled with fused multiply-add): the first half counts up from start, the second down from end."""
    s, e = F32(start), F32(end)
    step = F32((e - s) / F32(steps - 1))
    half = steps // 2
    return np.array([fma_f32(step, F32(k), s) if k < half else fma_f32(-step, F32(steps - 1 - k), e)
                     for k in range(steps)], dtype=F32)


def create_dynamic_map_signed() -> np.ndarray:
    """create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): 256 sorted float32,
    every step in float32 as torch computes it."""
    data = []
    max_exponent_bits, non_sign_bits = 7, 7
    for i in range(max_exponent_bits):
        items = 2 ** (i + non_sign_bits - max_exponent_bits) + 1
        bounds = torch_linspace_f32(0.1, 1.0, items)
        means = ((bounds[:-1] + bounds[1:]) / F32(2.0)).astype(F32)
        scale = F32(10.0 ** (-(max_exponent_bits - 1) + i))   # Python scalar, cast to the tensor's float32
        data += list((scale * means).astype(F32)) + list(((-scale) * means).astype(F32))
    data += [F32(0.0), F32(1.0)]
    assert len(data) == 256
    return np.sort(np.array(data, dtype=F32))


def dquantize(code: np.ndarray, x: np.ndarray) -> np.ndarray:
    """dQuantize<STOCHASTIC=0>: the 7-step pivot search and midpoint rule, vectorized."""
    x = x.astype(F32)
    pivot = np.full(x.shape, 127, dtype=np.int64)
    upper_pivot = np.full(x.shape, 255, dtype=np.int64)
    lower_pivot = np.zeros(x.shape, dtype=np.int64)
    lower = np.full(x.shape, F32(-1.0), dtype=F32)
    upper = np.full(x.shape, F32(1.0), dtype=F32)
    val = code[pivot]
    i = 64
    while i > 0:
        go_up = x > val
        lower_pivot = np.where(go_up, pivot, lower_pivot)
        lower = np.where(go_up, val, lower)
        upper_pivot = np.where(go_up, upper_pivot, pivot)
        upper = np.where(go_up, upper, val)
        pivot = np.where(go_up, pivot + i, pivot - i)
        val = code[pivot]
        i >>= 1
    upper = np.where(upper_pivot == 255, code[255], upper)
    lower = np.where(lower_pivot == 0, code[0], lower)
    half = F32(0.5)
    mid_up = ((upper + val) * half).astype(F32)
    mid_down = ((lower + val) * half).astype(F32)
    above = x > val
    result = np.where(above,
                      np.where(x > mid_up, upper_pivot, pivot),
                      np.where(x < mid_down, lower_pivot, pivot))
    return result.astype(np.uint8)


def blockwise_absmax(x: np.ndarray, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pads with 0.0 to whole blocks; returns (padded blocks, float32 absmax per block)."""
    n = x.size
    blocks = -(-n // block_size)
    padded = np.zeros(blocks * block_size, dtype=F32)
    padded[:n] = x
    padded = padded.reshape(blocks, block_size)
    return padded, np.abs(padded).max(axis=1).astype(F32)


def reciprocal(absmax: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return (F32(1.0) / absmax).astype(F32)


def quantize_dynamic_blockwise(values: np.ndarray, code: np.ndarray, block_size: int):
    padded, absmax = blockwise_absmax(values, block_size)
    with np.errstate(invalid="ignore"):
        scaled = (padded * reciprocal(absmax)[:, None]).astype(F32)
    q = dquantize(code, scaled).reshape(-1)[: values.size]
    return q, absmax


def dequantize_dynamic_blockwise(q: np.ndarray, absmax: np.ndarray, code: np.ndarray, block_size: int):
    scale = np.repeat(absmax, block_size)[: q.size]
    return (code[q] * scale).astype(F32)


def quantize_nf4(x: np.ndarray, block_size: int):
    padded, absmax = blockwise_absmax(x, block_size)
    with np.errstate(invalid="ignore"):
        scaled = (padded * reciprocal(absmax)[:, None]).astype(F32)
    codes = nf4_tree(scaled).reshape(-1)
    if codes.size % 2:
        codes = np.append(codes, np.uint8(0))  # never happens: block sizes are even
    packed = ((codes[0::2] << 4) | codes[1::2]).astype(np.uint8)
    return packed[: (x.size + 1) // 2], absmax


def unpack_nf4(packed: np.ndarray, count: int) -> np.ndarray:
    out = np.empty(packed.size * 2, dtype=np.uint8)
    out[0::2] = packed >> 4
    out[1::2] = packed & 0x0F
    return out[:count]


def bf16_rne(x: np.ndarray) -> np.ndarray:
    u = x.astype(F32).view(np.uint32).astype(np.uint64)
    u = u + 0x7FFF + ((u >> 16) & 1)
    return ((u >> 16) & 0xFFFF).astype(np.uint16)


def _ceil_log2(x: int) -> int:
    return 0 if x <= 1 else (x - 1).bit_length()


def torch_sum_f32(values: np.ndarray, lanes: int = 8) -> np.float32:
    """torch's CPU float32 sum of a contiguous vector on one thread (aten/native/cpu/SumKernel.cpp:
    vectorized_inner_sum -> row_sum -> multi_row_sum), with `lanes`-wide vectors (8: AVX2, NEON)."""
    x = np.ascontiguousarray(values, dtype=F32).reshape(-1)
    n = x.size
    nvec = n // lanes
    vecs = x[: nvec * lanes].reshape(nvec, lanes)
    rows, levels = 4, 4
    size = nvec // rows                                   # groups of 4 consecutive vectors
    power = max(4, _ceil_log2(size) // levels)
    step, mask = 1 << power, (1 << power) - 1
    acc = np.zeros((levels, rows, lanes), dtype=F32)
    i = 0
    while i + step <= size:
        for _ in range(step):
            acc[0] = (acc[0] + vecs[i * rows:(i + 1) * rows]).astype(F32)
            i += 1
        for j in range(1, levels):
            acc[j] = (acc[j] + acc[j - 1]).astype(F32)
            acc[j - 1] = 0
            if i & (mask << (j * power)):
                break
    while i < size:
        acc[0] = (acc[0] + vecs[i * rows:(i + 1) * rows]).astype(F32)
        i += 1
    for j in range(1, levels):
        acc[0] = (acc[0] + acc[j]).astype(F32)
    partial = acc[0]
    for v in range(size * rows, nvec):                    # vectors left over from the groups of 4
        partial[0] = (partial[0] + vecs[v]).astype(F32)
    for k in range(1, rows):
        partial[0] = (partial[0] + partial[k]).astype(F32)
    total = F32(0.0)
    for k in range(nvec * lanes, n):                      # scalar tail first, then the lanes
        total = F32(total + x[k])
    for k in range(lanes):
        total = F32(total + partial[0][k])
    return total


def mean_f32(values: np.ndarray) -> np.float32:
    """torch's `absmax.mean()` on CPU for float32: the sum above, divided once in float32."""
    if values.size == 0:
        return F32(0.0)
    return F32(torch_sum_f32(values) / F32(values.size))


def nf4_reference(x: np.ndarray, block_size: int, double_quant: bool, dq_block_size: int) -> dict:
    x = np.ascontiguousarray(x, dtype=F32).reshape(-1)
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        raise ValueError(f"non-finite value {x[bad[0]]} at element {bad[0]}")
    dmap = create_dynamic_map_signed()
    packed, absmax = quantize_nf4(x, block_size)
    out = {"codes": packed, "absmax": absmax, "nf4_code": NF4_CODE, "dynamic_map": dmap}
    if double_quant:
        offset = mean_f32(absmax)
        centered = (absmax - offset).astype(F32)
        q, absmax2 = quantize_dynamic_blockwise(centered, dmap, dq_block_size)
        decoded = (dequantize_dynamic_blockwise(q, absmax2, dmap, dq_block_size) + offset).astype(F32)
        out.update(absmax_codes=q, absmax2=absmax2, offset=np.array([offset], dtype=F32))
    else:
        decoded = absmax
        out.update(absmax_codes=np.zeros(0, np.uint8), absmax2=np.zeros(0, F32),
                   offset=np.array([0.0], dtype=F32))
    scale = np.repeat(decoded, block_size)[: x.size]
    deq = (NF4_CODE[unpack_nf4(packed, x.size)] * scale).astype(F32)
    out.update(absmax_decoded=decoded, dequantized=deq, dequantized_bf16=bf16_rne(deq))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("quantize")
    q.add_argument("input")
    q.add_argument("output")
    q.add_argument("--block-size", type=int, default=64)
    q.add_argument("--no-double-quant", action="store_true")
    q.add_argument("--dq-block-size", type=int, default=256)
    d = sub.add_parser("dynamic")
    d.add_argument("input")
    d.add_argument("output")
    d.add_argument("--block-size", type=int, default=256)
    args = ap.parse_args(argv)

    x = np.load(args.input).astype(F32).reshape(-1)
    if args.cmd == "quantize":
        for size in (args.block_size, args.dq_block_size):
            if size < 32 or size > 4096 or size & (size - 1):
                print(f"{args.input}: block size {size} is not a power of two in 32...4096", file=sys.stderr)
                return 2
        try:
            out = nf4_reference(x, args.block_size, not args.no_double_quant, args.dq_block_size)
        except ValueError as e:
            print(f"{args.input}: {e}", file=sys.stderr)
            return 2
    else:
        if not np.isfinite(x).all():
            print(f"{args.input}: non-finite input", file=sys.stderr)
            return 2
        dmap = create_dynamic_map_signed()
        codes, absmax = quantize_dynamic_blockwise(x, dmap, args.block_size)
        out = {"codes": codes, "absmax": absmax, "dynamic_map": dmap,
               "dequantized": dequantize_dynamic_blockwise(codes, absmax, dmap, args.block_size)}
    np.savez(args.output, **out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
