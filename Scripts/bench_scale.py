#!/usr/bin/env python3
"""Driver of Scripts/bench-scale: runs `qst-tune --benchmark` on synthetic containers in a child
process while sampling its memory, and prints a Markdown table plus JSON lines."""
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

BIN = os.environ["QST_BIN"]
DIR = os.environ.get("QST_SYNTHETIC_DIR", os.path.join(os.environ.get("QST_CACHE", os.path.expanduser("~/.cache/qst")), "synthetic"))
REPEATS = os.environ.get("QST_SCALE_REPEATS", "2")
# Shapes whose forward takes minutes are measured by plain training steps only.
TRAIN_ONLY = set(os.environ.get("QST_SCALE_TRAIN_ONLY", "llama-2-70b").split(","))
STEPS = int(os.environ.get("QST_SCALE_STEPS", "2"))
BUDGET = os.environ.get("QST_SCALE_BUDGET_MB", "2048")
SIDE_ARGS = os.environ.get("QST_SCALE_SIDE_ARGS", "").split()   # e.g. "--r 32"


def status_kb(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def run_sampled(args):
    """Runs args; returns (stdout, seconds, peak RSS MiB, peak anonymous MiB, peak file-backed MiB)."""
    start = time.time()
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
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
    out, err = p.communicate()
    t.join()
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {err.strip()[-500:]}")
    return out, time.time() - start, peaks["VmHWM"] / 1024, peaks["RssAnon"] / 1024, peaks["RssFile"] / 1024


def main():
    shapes = sys.argv[1:]
    rows = []
    print(f"machine: {os.cpu_count()} cores, "
          f"{open('/proc/cpuinfo').read().split('model name')[1].split(':')[1].splitlines()[0].strip()}, "
          f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
          f"{time.strftime('%Y-%m-%d')}, load {open('/proc/loadavg').read().split()[:3]}")
    print()
    print("| shape | container | batch × tokens | budget | s/step (training) | train tok/s | forward-only tok/s | peak RSS | peak anonymous |")
    print("|---|---|---|---|---|---|---|---|---|")
    for shape in shapes:
        container = os.path.join(DIR, f"{shape}.qst4")
        size_gb = os.path.getsize(container) / 1e9
        with tempfile.TemporaryDirectory() as side:
            subprocess.run([f"{BIN}/qst-init-side", container, "-o", side, "--json"] + SIDE_ARGS, check=True,
                           stdout=subprocess.DEVNULL)
            for budget in ((BUDGET,) if shape in TRAIN_ONLY else (None, BUDGET)):
                if shape in TRAIN_ONLY:
                    data = os.path.join(side, "data.jsonl")
                    with open(data, "w") as f:   # 255 bytes + BOS = 256 tokens with the byte tokenizer
                        for i in range(STEPS):
                            f.write(json.dumps({"text": "".join(chr(97 + (i * 7 + k * 13) % 26) for k in range(255))}) + "\n")
                    args = [f"{BIN}/qst-tune", container, side, "--data", data, "--steps", str(STEPS), "--batch-size", "1",
                            "--max-length", "256", "--save-every", "0", "--eval-every", "0",
                            "-o", os.path.join(side, "run"), "--json"]
                else:
                    args = [f"{BIN}/qst-tune", container, side, "--benchmark", REPEATS, "--batch-size", "1",
                            "--max-length", "256", "--json"]
                if budget:
                    args += ["--resident-budget", budget]
                out, secs, rss, anon, filed = run_sampled(args)
                r = json.loads(out)
                if shape in TRAIN_ONLY:
                    r = {"trainingTokensPerSecond": r["tokensPerSecond"], "backboneForwardTokensPerSecond": float("nan")}
                step = 256 / r["trainingTokensPerSecond"]
                row = dict(shape=shape, containerGB=round(size_gb, 2), batch=1, tokens=256, budgetMB=budget,
                           secondsPerStep=round(step, 2), trainTokensPerSecond=round(r["trainingTokensPerSecond"], 1),
                           forwardTokensPerSecond=round(r["backboneForwardTokensPerSecond"], 1),
                           peakRSSMiB=round(rss), peakAnonMiB=round(anon), peakFileMiB=round(filed), wallSeconds=round(secs, 1))
                rows.append(row)
                print(f"| {shape} {' '.join(SIDE_ARGS)} | {size_gb:.1f} GB | 1 × 256 | {budget + ' MB' if budget else 'none'} | {step:.2f} | "
                      f"{row['trainTokensPerSecond']} | {row['forwardTokensPerSecond']} | {rss:.0f} MiB | {anon:.0f} MiB |", flush=True)
    print()
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
