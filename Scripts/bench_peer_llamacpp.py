#!/usr/bin/env python3
"""Measure the peer, llama.cpp (via llama-cpp-python), on this machine with SmolLM2-135M-Instruct.

Run through Scripts/bench-peer-llamacpp, which prepares the peer venv. Every measurement runs in a
fresh subprocess (this file with --worker ...) so its peak RSS (VmHWM) belongs to that run alone.

  quantize  llama_model_quantize F32 (and F16) GGUF -> Q4_0, nthread 2 and 0 (= all cores);
            input MB/s = input file size / wall seconds, page cache warmed first.
  infer     pp512 (one llama_decode of 512 tokens) and tg128 (128 single-token decodes), like
            llama-bench: random tokens, KV cache cleared before each test, one warm-up first.

The F32/F16 GGUFs are made from the original Q4_1 GGUF by dequantizing every tensor (no
permutation: llama.cpp's own q/k layout is kept) and cached in $QST_CACHE/peer/. They are checked
each run: llama.cpp re-quantizing the F32 GGUF to Q4_1 must give the original tensors byte for byte.

Each run also records its CPU share (own CPU time / wall / threads) and the share of all cores other
processes used meanwhile (/proc/stat); "clean" medians keep only runs where the latter was < 10%,
because on a shared 2-core machine contention, not the kernels, otherwise decides the numbers.
Output: a Markdown table, then one JSON object (also written to --json-out if given).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from qst_py.llamacpp_workers import (  # noqa: E402 (Scripts/ is on sys.path: this file runs as a script)
    MIB, SANITY_PROMPT, busy_fraction, loadavg, qst_cache, wait_for_idle, worker_baseline, worker_infer,
    worker_quantize)

MODEL_NAME = "SmolLM2-135M-Instruct"


# ---------------------------------------------------------------- GGUF conversion (parent side)

def convert_gguf(src: Path, dst: Path, target: str) -> None:
    """Write `dst`: every tensor of `src` dequantized to F32; for target "f16" the 2-D ones then go to F16.

    1-D tensors (norms) stay F32 in the F16 file, as llama.cpp's own converter does.
    """
    import numpy as np
    import gguf

    reader = gguf.GGUFReader(str(src))
    arch = reader.get_field("general.architecture").contents()
    tmp = dst.with_suffix(dst.suffix + ".tmp")
    writer = gguf.GGUFWriter(str(tmp), arch)
    file_type = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16}[target]
    for field in reader.fields.values():
        # GGUF.* are the reader's virtual header fields; the writer adds general.architecture itself.
        if field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue
        vtype = field.types[0]
        if field.name == "general.file_type":
            writer.add_uint32(field.name, int(file_type))
            continue
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), vtype, sub_type=sub)
    for t in reader.tensors:
        data = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)
        # The reader gives numpy order (reversed ggml ne); dequantize keeps rows, so check the count.
        expect = tuple(int(d) for d in reversed(t.shape.tolist()))
        if data.shape != expect:
            data = data.reshape(expect)
        if target == "f16" and data.ndim >= 2:
            data = data.astype(np.float16)
        writer.add_tensor(t.name, np.ascontiguousarray(data))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, dst)


def identical_tensors(a: Path, b: Path) -> tuple[int, int]:
    """How many tensors of `b` have the same type and bytes as the tensor of that name in `a`."""
    import numpy as np
    import gguf
    ref = {t.name: t for t in gguf.GGUFReader(str(a)).tensors}
    got = gguf.GGUFReader(str(b)).tensors
    same = sum(1 for t in got if t.name in ref and ref[t.name].tensor_type == t.tensor_type
               and np.array_equal(np.asarray(ref[t.name].data), np.asarray(t.data)))
    return same, len(got)


def tensor_type_counts(path: Path) -> dict:
    import gguf
    counts: dict[str, int] = {}
    for t in gguf.GGUFReader(str(path)).tensors:
        counts[t.tensor_type.name] = counts.get(t.tensor_type.name, 0) + 1
    return dict(sorted(counts.items()))


# ---------------------------------------------------------------- parent: orchestration and report

def run_worker(argv: list[str], max_idle_wait: float) -> dict:
    idle = wait_for_idle(max_idle_wait) if max_idle_wait > 0 else {"busy_before": round(busy_fraction(), 3)}
    cmd = [sys.executable, os.path.abspath(__file__), *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"bench_peer_llamacpp: worker {' '.join(argv)} failed ({proc.returncode}):\n"
                         f"{proc.stderr[-3000:]}")
    last = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not last:
        raise SystemExit(f"bench_peer_llamacpp: worker {' '.join(argv)} printed no JSON:\n{proc.stdout[-2000:]}")
    return {**json.loads(last[-1]), **idle}


CLEAN_OTHERS = 0.1  # a run during which other processes used less than this share of all cores is "clean"


def summarize(samples: list[dict], key: str, others_key: str) -> dict:
    vals = [s[key] for s in samples]
    clean = [s[key] for s in samples if s[others_key] < CLEAN_OTHERS]
    return {"min": min(vals), "median": statistics.median(vals), "max": max(vals), "all": vals,
            "clean_runs": len(clean), "clean_median": statistics.median(clean) if clean else None}


def machine_info() -> dict:
    model = "unknown"
    flags: list[str] = []
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name") and model == "unknown":
            model = line.split(":", 1)[1].strip()
        if line.startswith("flags") and not flags:
            flags = line.split(":", 1)[1].split()
    simd = [f for f in flags if f.startswith(("avx", "amx", "fma", "f16c"))]
    mem_kib = next(int(l.split()[1]) for l in Path("/proc/meminfo").read_text().splitlines()
                   if l.startswith("MemTotal:"))
    return {"nproc": os.cpu_count(), "cpu_model": model, "cpu_simd_flags": simd,
            "mem_total_gib": round(mem_kib / MIB, 1), "kernel": platform.release(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "loadavg_start": loadavg(), "nice": os.nice(0)}


def peer_info() -> dict:
    # ggml_version/ggml_commit come from libggml-base, which llama-cpp-python ships beside libllama.
    code = ("import ctypes, glob, json, os, llama_cpp\n"
            "d = {'version': llama_cpp.__version__, 'system_info': llama_cpp.llama_print_system_info().decode()}\n"
            "libs = glob.glob(os.path.join(os.path.dirname(llama_cpp.__file__), 'lib', 'libggml-base.so*'))\n"
            "if libs:\n"
            "    g = ctypes.CDLL(libs[0])\n"
            "    for f in ('ggml_version', 'ggml_commit'):\n"
            "        getattr(g, f).restype = ctypes.c_char_p\n"
            "        d[f] = getattr(g, f)().decode()\n"
            "print(json.dumps(d))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    info = json.loads(out.strip().splitlines()[-1])
    feats = [p.strip() for p in info["system_info"].replace("|", "\n").splitlines() if "= 1" in p]
    info["cpu_features_on"] = [f.split("=")[0].strip() for f in feats]
    return info


def ensure_models(work: Path, src: Path, want_f16: bool) -> dict[str, Path]:
    paths = {t: work / f"{MODEL_NAME}.{t.upper()}.gguf" for t in (("f32", "f16") if want_f16 else ("f32",))}
    for target, path in paths.items():
        if not path.exists() or path.stat().st_mtime < src.stat().st_mtime:
            print(f"[peer] writing {path.name} from {src.name}", file=sys.stderr)
            convert_gguf(src, path, target)
    return paths


def fmt(v: float, digits: int = 1) -> str:
    return f"{v:,.{digits}f}"


def markdown(report: dict) -> str:
    rows = ["| run | metric | min | median | max | clean runs | clean median | peak RSS MiB (median VmHWM) "
            "| CPU share (median) |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]

    def clean(st: dict, digits: int) -> str:
        return f"{st['clean_runs']} | " + (fmt(st["clean_median"], digits) if st["clean_runs"] else "-")

    def med(samples: list[dict], key: str) -> float:
        return statistics.median(s[key] for s in samples)

    for name, r in report["quantize"].items():
        rss, share = med(r["samples"], "vmhwm_mib"), med(r["samples"], "cpu_share")
        for key, label in (("in_mb_s", "input MB/s"), ("wall_s", "wall s")):
            st = r[key]
            rows.append(f"| quantize {name} | {label} | {fmt(st['min'], 2)} | {fmt(st['median'], 2)} | "
                        f"{fmt(st['max'], 2)} | {clean(st, 2)} | {fmt(rss)} | {share:.2f} |")
    settings = report["settings"]
    for name, r in report["infer"].items():
        rss = med(r["samples"], "vmhwm_mib")
        for key, label, share_key in (("pp_tps", f"pp{settings['n_prompt']} tok/s", "pp_cpu_share"),
                                      ("tg_tps", f"tg{settings['n_gen']} tok/s", "tg_cpu_share")):
            st = r[key]
            rows.append(f"| infer {name} | {label} | {fmt(st['min'])} | {fmt(st['median'])} | "
                        f"{fmt(st['max'])} | {clean(st, 1)} | {fmt(rss)} | {med(r['samples'], share_key):.2f} |")
    return "\n".join(rows)


def parent(args: argparse.Namespace) -> int:
    cache = qst_cache()
    src = Path(args.source) if args.source else cache / "downloads" / f"{MODEL_NAME}.Q4_1.gguf"
    if not src.exists():
        print(f"bench_peer_llamacpp: {src} missing; run Scripts/fetch-model first", file=sys.stderr)
        return 2
    work = cache / "peer"
    work.mkdir(parents=True, exist_ok=True)
    report: dict = {"machine": machine_info(), "peer": {"name": "llama.cpp via llama-cpp-python", **peer_info()},
                    "model": MODEL_NAME, "source_gguf": str(src),
                    "settings": {"repeats": args.repeats, "threads": args.threads, "n_ctx": args.n_ctx,
                                 "n_batch": args.n_batch, "n_prompt": args.n_prompt, "n_gen": args.n_gen,
                                 "flash_attn": args.flash_attn, "wait_idle_s": args.wait_idle,
                                 "kv_cache_type": "f16 (llama.cpp default)"},
                    "quantize": {}, "infer": {}}
    t0 = time.perf_counter()
    models = ensure_models(work, src, want_f16=not args.no_f16)
    report["convert_s"] = round(time.perf_counter() - t0, 2)
    report["baseline_rss"] = run_worker(["--worker", "baseline"], 0)
    # Independent check of the converted F32 GGUF: Q4_1 is a fixed point of dequantize->quantize, so
    # llama.cpp re-quantizing it to Q4_1 must give the original's tensors back byte for byte.
    check = work / f"{MODEL_NAME}.Q4_1.roundtrip.gguf"
    run_worker(["--worker", "quantize", "--input", str(models["f32"]), "--output", str(check),
                "--nthread", "2", "--ftype", "q4_1"], 0)
    same, total = identical_tensors(src, check)
    check.unlink()
    report["f32_gguf_check"] = {"requantized_q4_1_tensors_identical_to_original": same, "tensors": total}
    print(f"[peer] F32 GGUF check: re-quantized to Q4_1, {same}/{total} tensors identical", file=sys.stderr)

    q4_0 = work / f"{MODEL_NAME}.Q4_0.gguf"
    jobs = [("f32->q4_0 nthread=2", models["f32"], 2), ("f32->q4_0 nthread=0", models["f32"], 0)]
    if "f16" in models:
        jobs.append(("f16->q4_0 nthread=2", models["f16"], 2))
    for name, inp, nthread in jobs:
        out = work / f"{MODEL_NAME}.Q4_0.from-{inp.stem.split('.')[-1]}.n{nthread}.gguf"
        samples = []
        for i in range(args.repeats):
            print(f"[peer] quantize {name} run {i + 1}/{args.repeats}", file=sys.stderr)
            samples.append(run_worker(["--worker", "quantize", "--input", str(inp), "--output", str(out),
                                       "--nthread", str(nthread)], args.wait_idle))
        report["quantize"][name] = {"input": str(inp), "output": str(out), "output_tensor_types":
                                    tensor_type_counts(out), "in_mb_s": summarize(samples, "in_mb_s", "others_share"),
                                    "wall_s": summarize(samples, "wall_s", "others_share"), "samples": samples}
        if name == "f32->q4_0 nthread=2":
            os.replace(out, q4_0)
            report["quantize"][name]["output"] = str(q4_0)
        else:
            out.unlink()

    infer_models = {"Q4_0 (from F32)": q4_0, "Q4_1 (original)": src, "F32": models["f32"]}
    if "f16" in models:
        infer_models["F16"] = models["f16"]
    for name, path in infer_models.items():
        samples = []
        for i in range(args.repeats):
            print(f"[peer] infer {name} run {i + 1}/{args.repeats}", file=sys.stderr)
            samples.append(run_worker(["--worker", "infer", "--model", str(path), "--threads", str(args.threads),
                                       "--n-ctx", str(args.n_ctx), "--n-batch", str(args.n_batch),
                                       "--n-prompt", str(args.n_prompt), "--n-gen", str(args.n_gen)]
                                      + (["--flash-attn"] if args.flash_attn else []), args.wait_idle))
        report["infer"][name] = {"model": str(path), "file_bytes": path.stat().st_size,
                                 "tensor_types": tensor_type_counts(path),
                                 "pp_tps": summarize(samples, "pp_tps", "pp_others_share"),
                                 "tg_tps": summarize(samples, "tg_tps", "tg_others_share"),
                                 "sanity_text": samples[0]["sanity_text"], "samples": samples}
    report["machine"]["loadavg_end"] = loadavg()

    print(f"## llama.cpp peer ({report['peer']['version']}), {MODEL_NAME}, {args.threads} threads, "
          f"{args.repeats} fresh processes each\n")
    print(markdown(report))
    print(f"\nMachine: {report['machine']['nproc']} cores, {report['machine']['cpu_model']}, "
          f"load avg at start {report['machine']['loadavg_start']}")
    print("CPU share = process CPU time / (wall x threads) during the timed section; OpenMP workers spin, "
          "so well below 1.0 means other processes took the cores. Clean runs: other processes used "
          f"< {CLEAN_OTHERS:.0%} of all cores during the timed section (from /proc/stat).")
    print(f"Peak RSS of a worker that only imports llama_cpp: {report['baseline_rss']['vmhwm_mib']} MiB "
          "(included in the RSS column).")
    chk = report["f32_gguf_check"]
    print(f"F32 GGUF check: llama.cpp re-quantizing it to Q4_1 gives {chk['requantized_q4_1_tensors_identical_to_original']}"
          f"/{chk['tensors']} tensors byte-identical to the original GGUF")
    print(f"llama.cpp CPU features on: {', '.join(report['peer']['cpu_features_on'])}")
    for name, r in report["infer"].items():
        print(f"Sanity {name}: {SANITY_PROMPT!r} -> {r['sanity_text']!r}")
    print()
    text = json.dumps(report, indent=1)
    print(text)
    if args.json_out:
        Path(args.json_out).write_text(text + "\n")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5, help="fresh processes per measurement (default 5)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-ctx", type=int, default=1024)
    ap.add_argument("--n-batch", type=int, default=512)
    ap.add_argument("--n-prompt", type=int, default=512)
    ap.add_argument("--n-gen", type=int, default=128)
    ap.add_argument("--wait-idle", type=float, default=0, metavar="S",
                    help="before each run wait up to S seconds for the CPUs to be <15%% busy (default 0: no wait)")
    ap.add_argument("--flash-attn", action="store_true", help="enable flash attention (llama-bench default: off)")
    ap.add_argument("--source", help="original GGUF (default $QST_CACHE/downloads/SmolLM2-135M-Instruct.Q4_1.gguf)")
    ap.add_argument("--no-f16", action="store_true", help="skip the F16 GGUF (quantize and infer)")
    ap.add_argument("--json-out", help="also write the JSON report here")
    # Worker mode (internal).
    ap.add_argument("--worker", choices=["quantize", "infer", "baseline"], help=argparse.SUPPRESS)
    ap.add_argument("--input", help=argparse.SUPPRESS)
    ap.add_argument("--output", help=argparse.SUPPRESS)
    ap.add_argument("--nthread", type=int, default=2, help=argparse.SUPPRESS)
    ap.add_argument("--ftype", default="q4_0", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")
    if args.worker:
        fn = {"quantize": worker_quantize, "infer": worker_infer, "baseline": worker_baseline}[args.worker]
        print(json.dumps(fn(args)))
        return 0
    return parent(args)


if __name__ == "__main__":
    sys.exit(main())
