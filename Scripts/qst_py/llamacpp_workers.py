"""The measuring side of Scripts/bench_peer_llamacpp.py: CPU and contention accounting shared with the parent,
and the workers that time llama.cpp, each in a fresh subprocess (so its peak RSS is its own)."""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

SANITY_PROMPT = "The capital of France is"
MIB = 1024 * 1024


# ---------------------------------------------------------------- helpers shared by parent and workers

def qst_cache() -> Path:
    return Path(os.environ.get("QST_CACHE") or Path.home() / ".cache" / "qst")


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def cpu_seconds() -> float:
    import resource
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def cpu_share(cpu_s: float, wall_s: float, threads: int) -> float:
    # Fraction of `threads` cores this process actually ran on. OpenMP workers spin while waiting, so
    # a value near 1.0 means the run was not starved by other processes; far below 1.0 means contention.
    return round(cpu_s / (wall_s * max(threads, 1)), 3)


def cpu_snap() -> tuple[int, int]:
    """(total, idle) jiffies of all CPUs from /proc/stat."""
    vals = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(vals), vals[3] + vals[4]


class Section:
    """Times one measured section: wall, own CPU, and how much of the machine other processes used."""

    def __enter__(self) -> "Section":
        self.snap, self.cpu, self.t0 = cpu_snap(), cpu_seconds(), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.own_cpu = time.perf_counter() - self.t0, cpu_seconds() - self.cpu
        (t1, i1), (t2, i2) = self.snap, cpu_snap()
        tick = os.sysconf("SC_CLK_TCK")
        busy_s = ((t2 - t1) - (i2 - i1)) / tick
        # Jiffies are coarse (10 ms), so clamp: this is a contention indicator, not a precise share.
        self.others_share = round(min(max((busy_s - self.own_cpu) / (self.wall * (os.cpu_count() or 1)), 0.0), 1.0), 3)


def busy_fraction(interval: float = 0.5) -> float:
    """Fraction of all CPUs busy (any process, including this one) over `interval` seconds."""
    t1, i1 = cpu_snap()
    time.sleep(interval)
    t2, i2 = cpu_snap()
    return 1.0 - (i2 - i1) / max(t2 - t1, 1)


def wait_for_idle(max_wait: float, threshold: float = 0.15) -> dict:
    start = time.perf_counter()
    busy = busy_fraction()
    while busy > threshold and time.perf_counter() - start < max_wait:
        busy = busy_fraction()
    return {"waited_s": round(time.perf_counter() - start, 1), "busy_before": round(busy, 3)}


def peak_rss_mib() -> dict:
    import resource
    hwm = next(int(l.split()[1]) for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM:"))
    return {"vmhwm_mib": round(hwm / 1024, 1),
            "ru_maxrss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def warm_page_cache(path: Path) -> None:
    # Read through the file once so the measurement sees a warm page cache, without keeping it in RSS.
    with open(path, "rb", buffering=0) as f:
        while f.read(16 * MIB):
            pass


# ---------------------------------------------------------------- workers (fresh subprocess each)

def worker_quantize(args: argparse.Namespace) -> dict:
    import ctypes
    import llama_cpp
    src, dst = Path(args.input), Path(args.output)
    warm_page_cache(src)
    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = args.nthread
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{args.ftype.upper()}")
    la = loadavg()
    with Section() as sec:
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    wall, cpu = sec.wall, sec.own_cpu
    if rc != 0:
        raise SystemExit(f"bench_peer_llamacpp: llama_model_quantize {src} -> {dst} returned {rc}")
    size = src.stat().st_size
    return {"wall_s": wall, "in_mb_s": size / 1e6 / wall, "in_bytes": size,
            "out_bytes": dst.stat().st_size, "loadavg_start": la,
            "cpu_share": cpu_share(cpu, wall, args.nthread or (os.cpu_count() or 1)),
            "others_share": sec.others_share, **peak_rss_mib()}


def worker_baseline(args: argparse.Namespace) -> dict:
    # Peak RSS of a worker that only imports llama_cpp (interpreter + shared libraries), to subtract.
    import llama_cpp  # noqa: F401
    return peak_rss_mib()


def clear_kv(llama_cpp, ctx) -> None:
    llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)  # llama-cpp-python >= 0.3.10


def decode(llama_cpp, ctx, tokens: list[int]) -> None:
    arr = (llama_cpp.llama_token * len(tokens))(*tokens)
    rc = llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(arr, len(tokens)))
    if rc != 0:
        raise SystemExit(f"bench_peer_llamacpp: llama_decode of {len(tokens)} tokens returned {rc}")


def worker_infer(args: argparse.Namespace) -> dict:
    import random
    import llama_cpp
    path = Path(args.model)
    warm_page_cache(path)
    t0 = time.perf_counter()
    llm = llama_cpp.Llama(model_path=str(path), n_threads=args.threads, n_threads_batch=args.threads,
                          n_ctx=args.n_ctx, n_batch=args.n_batch, flash_attn=args.flash_attn, verbose=False)
    load_s = time.perf_counter() - t0
    ctx = llm._ctx.ctx
    n_vocab = llm.n_vocab()
    rng = random.Random(1234)
    pp_tokens = [rng.randrange(n_vocab) for _ in range(args.n_prompt)]
    tg_token = rng.randrange(n_vocab)

    # Warm-up, as llama-bench does: one prompt batch and one generated token.
    decode(llama_cpp, ctx, pp_tokens)
    clear_kv(llama_cpp, ctx)
    decode(llama_cpp, ctx, [tg_token])
    clear_kv(llama_cpp, ctx)

    la = loadavg()
    with Section() as pp:
        decode(llama_cpp, ctx, pp_tokens)
    clear_kv(llama_cpp, ctx)
    with Section() as tg:
        for _ in range(args.n_gen):
            decode(llama_cpp, ctx, [tg_token])
    pp_s, tg_s = pp.wall, tg.wall
    clear_kv(llama_cpp, ctx)
    rss = peak_rss_mib()

    # Sanity: greedy continuation, so a broken converted GGUF shows up as gibberish in the report.
    llm.reset()
    prompt = llm.tokenize(SANITY_PROMPT.encode(), add_bos=False)
    out = []
    for tok in llm.generate(prompt, temp=0.0, top_k=1):
        out.append(tok)
        if len(out) == 8 or tok == llm.token_eos():
            break
    return {"pp_tps": args.n_prompt / pp_s, "tg_tps": args.n_gen / tg_s, "pp_s": pp_s, "tg_s": tg_s,
            "pp_cpu_share": cpu_share(pp.own_cpu, pp_s, args.threads),
            "tg_cpu_share": cpu_share(tg.own_cpu, tg_s, args.threads),
            "pp_others_share": pp.others_share, "tg_others_share": tg.others_share,
            "load_s": load_s, "loadavg_start": la, **rss,
            "sanity_tokens": out, "sanity_text": llm.detokenize(out).decode("utf-8", "replace")}
