#!/usr/bin/env python3
"""Driver of Scripts/bench-scale (`bench_scale.py [--runs] SHAPE ...` or `bench_scale.py --table`): short training runs (`qst-tune`, QST and LoRA) on synthetic containers of
large model shapes in child processes while sampling their memory from /proc every 50 ms.

Each measured run is appended as one JSON line to $QST_SCALE_OUT/runs.jsonl (a run already there with the
same key is not repeated unless QST_SCALE_RERUN=1), so the table can be rebuilt from the cache:
`bench_scale.py --table` prints the Markdown tables of BENCHMARKS.md §8 from runs.jsonl plus the computed
estimates of scale_memory.py for the shapes or methods that were not run.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scale_memory  # noqa: E402
from qst_py.jsonl import read_jsonl  # noqa: E402

CACHE = os.environ.get("QST_CACHE", os.path.expanduser("~/.cache/qst"))
BIN = os.environ.get("QST_BIN", "")
DIR = os.environ.get("QST_SYNTHETIC_DIR", os.path.join(CACHE, "synthetic"))
OUT = os.environ.get("QST_SCALE_OUT", os.path.join(CACHE, "bench", "scale"))
STEPS = int(os.environ.get("QST_SCALE_STEPS", "2"))
SEQ = int(os.environ.get("QST_SCALE_SEQ", "256"))
BUDGET = os.environ.get("QST_SCALE_BUDGET_MB", "2048")
BIG_BUDGET = os.environ.get("QST_SCALE_BIG_BUDGET_MB", "4096")       # containers larger than RAM
METHODS = os.environ.get("QST_SCALE_METHODS", "qst,lora,lora-ckpt").split(",")
LORA_SHAPES = os.environ.get("QST_SCALE_LORA_SHAPES", "llama-2-7b").split(",")
SIDE_RS = os.environ.get("QST_SCALE_SIDE_RS", "16").split(",")        # e.g. "16,32" for 70B
SEARCH_SHAPES = [s for s in os.environ.get("QST_SCALE_SEARCH_SHAPES", "llama-2-7b").split(",") if s]
SEARCH_METHODS = os.environ.get("QST_SCALE_SEARCH_METHODS", "qst,lora").split(",")
SEARCH_MAX = int(os.environ.get("QST_SCALE_SEARCH_MAX_BATCH", "8"))
FIT_GIB = float(os.environ.get("QST_SCALE_FIT_GIB", "16"))            # "fits": peak anonymous memory under this
RERUN = os.environ.get("QST_SCALE_RERUN", "0") == "1"
BATCH1 = os.environ.get("QST_SCALE_BATCH1", "1") == "1"                # 0: only the largest-batch search
RAM = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def status_kb(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def run_sampled(args, log):
    """Runs args with stderr to `log`; returns (returncode, stdout, wall seconds, peaks in MiB)."""
    start = time.time()
    with open(log, "w") as lf:
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=lf, text=True)
        peaks = {"VmHWM": 0, "RssAnon": 0, "RssFile": 0}

        def sample():
            while p.poll() is None:
                for k in peaks:
                    v = status_kb(p.pid, k)
                    if v is not None:
                        peaks[k] = max(peaks[k], v)
                time.sleep(0.05)

        t = threading.Thread(target=sample, daemon=True)
        t.start()
        out, _ = p.communicate()
        t.join()
    return p.returncode, out, time.time() - start, {k: v / 1024 for k, v in peaks.items()}


def loadavg():
    return [float(x) for x in open("/proc/loadavg").read().split()[:3]]


def write_data(path, records):
    with open(path, "w") as f:   # 255 bytes + BOS = SEQ tokens with the synthetic byte tokenizer
        for i in range(records):
            f.write(json.dumps({"text": "".join(chr(97 + (i * 7 + k * 13) % 26) for k in range(SEQ - 1))}) + "\n")


def key_of(r):
    return (r["shape"], r["method"], r.get("r"), r["batch"], r["seq"], r["budgetMB"], r["steps"])


def load_runs():
    path = os.path.join(OUT, "runs.jsonl")
    if not os.path.exists(path):
        return []
    return read_jsonl(path)


def one_run(shape, method, batch, budget, r=16, steps=STEPS):
    """One qst-tune run of `steps` optimizer steps of batch × SEQ tokens; returns the JSON record."""
    container = os.path.join(DIR, f"{shape}.qst4")
    rec = dict(shape=shape, method=method, r=r if method == "qst" else 8, batch=batch, seq=SEQ,
               budgetMB=int(budget) if budget else None, steps=steps)
    cached = {key_of(x): x for x in load_runs()}
    if not RERUN and key_of(rec) in cached:
        return cached[key_of(rec)]
    work = tempfile.mkdtemp(prefix="qst-scale-", dir=OUT)
    try:
        data = os.path.join(work, "data.jsonl")
        write_data(data, batch * steps)
        args = [f"{BIN}/qst-tune", container]
        if method == "qst":
            side = os.path.join(work, "side")
            subprocess.run([f"{BIN}/qst-init-side", container, "-o", side, "--r", str(r), "--json"], check=True,
                           stdout=subprocess.DEVNULL)
            args.append(side)
        else:
            args += ["--method", "lora"] + (["--gradient-checkpointing"] if method == "lora-ckpt" else [])
        args += ["--data", data, "--steps", str(steps), "--batch-size", str(batch), "--max-length", str(SEQ),
                 "--save-every", "0", "--eval-every", "0", "-o", os.path.join(work, "run"), "--json"]
        if budget:
            args += ["--resident-budget", str(budget)]
        load0 = loadavg()
        code, out, secs, peaks = run_sampled(args, os.path.join(work, "stderr.log"))
        load1 = loadavg()
        rec.update(containerGB=round(os.path.getsize(container) / 1e9, 2), date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                   loadStart=load0, loadEnd=load1, wallSeconds=round(secs, 1), peakRSSMiB=round(peaks["VmHWM"]),
                   peakAnonMiB=round(peaks["RssAnon"]), peakFileMiB=round(peaks["RssFile"]), exitCode=code)
        if code == 0:
            log = read_jsonl(os.path.join(work, "run", "log.jsonl"), kind="train")
            times = [e["elapsedSeconds"] for e in log]
            rec.update(secondsPerStep=[round(t, 2) for t in times],
                       trainTokensPerSecond=round(batch * SEQ / min(times[1:] or times), 2))
        else:
            rec["error"] = open(os.path.join(work, "stderr.log")).read().strip().splitlines()[-1:]
        with open(os.path.join(OUT, "runs.jsonl"), "a") as f:
            f.write(json.dumps(rec) + "\n")
        return rec
    finally:
        shutil.rmtree(work, ignore_errors=True)


def show(rec):
    print(json.dumps(rec), flush=True)


def main():
    os.makedirs(OUT, exist_ok=True)
    args = sys.argv[1:]
    if args[:1] == ["--table"]:
        print(scale_memory.markdown(load_runs(), RAM))
        return
    runs_only = args[:1] == ["--runs"]     # Scripts/bench-scale prints the table once at the end
    if runs_only:
        args = args[1:]
    print(f"machine: {os.cpu_count()} cores, {RAM / 2**30:.0f} GiB, {time.strftime('%Y-%m-%d')}, load {loadavg()}",
          file=sys.stderr)
    for shape in args:
        size = os.path.getsize(os.path.join(DIR, f"{shape}.qst4"))
        larger_than_ram = size > 0.8 * RAM
        budgets = (BIG_BUDGET,) if larger_than_ram else (None, BUDGET)
        if "qst" in METHODS and BATCH1:
            for r in SIDE_RS:
                for b in budgets:
                    show(one_run(shape, "qst", 1, b, r=int(r)))
        if shape in LORA_SHAPES and BATCH1:
            for m in [m for m in METHODS if m.startswith("lora")]:
                show(one_run(shape, m, 1, budgets[-1] if larger_than_ram else None))
        if shape in SEARCH_SHAPES:
            # Largest batch that fits: batches 2, 4, 8, … (one step each) until peak anonymous memory
            # passes FIT_GIB, the run fails, or SEARCH_MAX is reached. A batch the formula already puts over
            # FIT_GIB is not started: on a shared machine an out-of-memory kill may hit someone else's process.
            for m in [m for m in SEARCH_METHODS if m in METHODS]:
                formula = scale_memory.linear_in_batch(shape, m)
                b = 2
                while b <= SEARCH_MAX:
                    if formula(b) > FIT_GIB * 2**30:
                        print(f"{shape} {m} batch {b}: formula {formula(b) / 2**30:.1f} GiB > {FIT_GIB:g} GiB, not run",
                              file=sys.stderr)
                        break
                    rec = one_run(shape, m, b, None, steps=1)
                    show(rec)
                    if rec["exitCode"] != 0 or rec["peakAnonMiB"] > FIT_GIB * 1024:
                        break
                    b *= 2
    if not runs_only:
        print(scale_memory.markdown(load_runs(), RAM))


if __name__ == "__main__":
    main()
