#!/usr/bin/env python3
"""Load generator for Scripts/bench-serve: concurrent clients against a running qst-serve (loopback).

    bench_serve.py URL REQUESTS_PER_CLIENT MAX_TOKENS MAX_SECONDS REPEATS SERVER_PID [JSON] [TARGETS_ONLY] [TEMPERATURE]

Besides wall-clock rates, each case records the server process's CPU seconds (/proc/PID/stat): tokens
per CPU second is what the server does with the cores it gets, steadier than tokens/s on a machine shared
with other jobs. Every case runs REPEATS times, interleaved (all cases, then all again); each figure is the median over
the repeats, and the ratios are ratios of those medians. Each ratio is also given per repeat, from the
cases of that repeat (back to back with TARGETS_ONLY): on a shared machine the single-stream speed drifts from minute to minute, and one
repeat's ratio can land far from the others (BENCHMARKS.md §31). TARGETS_ONLY=1 runs only the three cases
the ratios need (8 clients on one side, 8 clients on 8 sides, the 8 sides one after another), so more
repeats fit in the same time.

Plain http.client (one keep-alive connection per client thread) so the clients cost little CPU beside the
server on the same machine.
"""
import http.client
import json
import os
import statistics
import sys
import threading
import time
import urllib.parse

url, per_client, max_tokens, max_seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
repeats, server_pid = int(sys.argv[5]), int(sys.argv[6])
as_json = len(sys.argv) > 7 and sys.argv[7] == "1"
targets_only = len(sys.argv) > 8 and sys.argv[8] == "1"
# 0: greedy (the default of the targets); above 0, temperature sampling with top_p 1 and a seed per
# request, what OpenAI clients send by default (temperature 1).
temperature = float(sys.argv[9]) if len(sys.argv) > 9 and sys.argv[9] else 0.0


def cpu_seconds():
    with open(f"/proc/{server_pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

u = urllib.parse.urlparse(url)
assert u.hostname in ("127.0.0.1", "localhost", "::1"), "bench-serve only talks to loopback"
PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


def client(cid, models, count, deadline, out):
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    for k in range(count):
        if time.time() > deadline:
            break
        req = {"model": models[k % len(models)], "prompt": PROMPT, "max_tokens": max_tokens,
               "temperature": temperature, "ignore_eos": True}
        if temperature > 0:
            req["seed"] = 1000 * cid + k
        body = json.dumps(req)
        t0 = time.time()
        conn.request("POST", "/v1/completions", body, {"content-type": "application/json"})
        r = conn.getresponse()
        doc = json.loads(r.read())
        if r.status != 200:
            raise SystemExit(f"bench-serve: HTTP {r.status}: {doc}")
        out.append((time.time() - t0, doc["usage"]["completion_tokens"]))


def case(name, clients, models_of, count):
    deadline = time.time() + max_seconds
    out = []
    threads = [threading.Thread(target=client, args=(c, models_of(c), count, deadline, out)) for c in range(clients)]
    t0, c0 = time.time(), cpu_seconds()
    [t.start() for t in threads]
    [t.join() for t in threads]
    wall, cpu = time.time() - t0, cpu_seconds() - c0
    lat = sorted(x[0] for x in out)
    tokens = sum(x[1] for x in out)
    p99 = lat[min(len(lat) - 1, int(round(0.99 * (len(lat) - 1))))]
    return {"case": name, "clients": clients, "requests": len(out), "seconds": round(wall, 2),
            "requests_per_s": round(len(out) / wall, 3), "tokens_per_s": round(tokens / wall, 1),
            "p50_s": round(statistics.median(lat), 2), "p99_s": round(p99, 2),
            "tokens_per_cpu_s": round(tokens / max(cpu, 1e-9), 1)}


# Warm-up: page the weights in, start every side once.
case("warmup", 8, lambda c: [f"s{c + 1}"], 1)
cases = [(name, clients, f) for clients in ((8,) if targets_only else (1, 4, 8, 16))
         for name, f in (("one side", lambda c: ["s1"]), ("8 sides", lambda c: [f"s{c % 8 + 1}"]))]
runs = {}
for _ in range(repeats):
    for name, clients, f in cases:
        runs.setdefault((name, clients), []).append(case(name, clients, f, per_client))
    runs.setdefault(("8 sides one after another", 1), []).append(
        case("8 sides one after another", 1, lambda c: [f"s{k + 1}" for k in range(8)], 8))
rows = []
for (name, clients), rs in runs.items():
    row = dict(rs[0])
    for key in ("requests_per_s", "tokens_per_s", "p50_s", "p99_s", "seconds", "tokens_per_cpu_s"):
        row[key] = statistics.median(r[key] for r in rs)
    row["tokens_per_s_all"] = [r["tokens_per_s"] for r in rs]
    rows.append(row)
by = {(r["case"], r["clients"]): r for r in rows}
one8, many8, serial = by[("one side", 8)], by[("8 sides", 8)], by[("8 sides one after another", 1)]


def per_repeat(a, b, key="tokens_per_s"):
    return [round(x[key] / y[key], 2) for x, y in zip(runs[a], runs[b])]


spread = {"8 sides / one side (8 clients)": per_repeat(("8 sides", 8), ("one side", 8)),
          "8 sides concurrent / one after another": per_repeat(("8 sides", 8), ("8 sides one after another", 1))}
ratios = {"8 sides / one side (8 clients), target >= 0.8": round(many8["tokens_per_s"] / one8["tokens_per_s"], 2),
          "8 sides concurrent / one after another, target >= 3": round(many8["tokens_per_s"] / serial["tokens_per_s"], 2),
          "same, tokens per CPU second: 8 sides / one side": round(many8["tokens_per_cpu_s"] / one8["tokens_per_cpu_s"], 2),
          "same, tokens per CPU second: concurrent / one after another":
              round(many8["tokens_per_cpu_s"] / serial["tokens_per_cpu_s"], 2)}
if as_json:
    print(json.dumps({"rows": rows, "ratios": ratios, "ratios_per_repeat": spread, "max_tokens": max_tokens,
                      "repeats": repeats, "temperature": temperature}, indent=1))
else:
    print(f"medians of {repeats} repeats, {max_tokens} new tokens per request, temperature {temperature:g}")
    print(f"{'case':<28}{'clients':>8}{'requests':>9}{'req/s':>8}{'tok/s':>8}{'p50 s':>8}{'p99 s':>8}{'tok/cpu-s':>10}"
          "  tok/s per repeat")
    for r in rows:
        print(f"{r['case']:<28}{r['clients']:>8}{r['requests']:>9}{r['requests_per_s']:>8.3f}{r['tokens_per_s']:>8.1f}"
              f"{r['p50_s']:>8.2f}{r['p99_s']:>8.2f}{r['tokens_per_cpu_s']:>10.1f}  {r['tokens_per_s_all']}")
    for k, v in ratios.items():
        print(f"{k}: {v}")
    for k, v in spread.items():
        print(f"per repeat, {k}: {v} (median {round(statistics.median(v), 2)})")
