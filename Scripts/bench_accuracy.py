#!/usr/bin/env python3
"""The paper's accuracy table (issue 15): driven by Scripts/bench-accuracy, which builds the tools and the NF4
container and passes their paths. Standard library only (the numbers come from the QST tools).

For every GLUE task (SST-2, RTE, MRPC) and method (QST with both initialisations × adapter/avgpool
downsamplers, LoRA r 8 in the same engine): train on train.tsv minus a held-out slice, evaluate on the slice
every N steps, keep the best checkpoint, stop early (--patience); choose the learning rate on the slice (the
same grid size for every method); score the chosen best checkpoint once on the full dev set with the official
metric (qst-eval glue) and a 95 % confidence interval (Wilson for accuracy; a bootstrap over the confusion
matrix for F1). Wall time and peak memory (sampled from /proc) per training run. Then Alpaca (converted to
chat records, Scripts/alpaca-to-chat): validation-loss curve per method, and 5-shot MMLU (qst-eval choice)
of the frozen model and of the Alpaca-tuned QST models.
"""
import json, math, os, random, subprocess, sys, threading, time

BUDGETS = {
    # A smoke-sized budget that runs end to end in minutes; its numbers say nothing about the paper's claim.
    "quick": dict(train_limit=160, heldout=32, steps=12, epochs=None, eval_every=6, patience=2, batch=8,
                  dev_limit=64, lrs=1, alpaca_steps=8, alpaca_eval_every=4, alpaca_val=24, mmlu_subjects=2,
                  mmlu_limit=10),
    # The paper-sized run: hours on 2 cores.
    "full": dict(train_limit=0, heldout=500, steps=None, epochs=3, eval_every=200, patience=3, batch=16,
                 dev_limit=None, lrs=2, alpaca_steps=None, alpaca_eval_every=25, alpaca_val=200,
                 mmlu_subjects=None, mmlu_limit=None),
}
METHODS = {
    "qst-base-adapter": ["--init", "base", "--downsample", "adapter"],
    "qst-base-avgpool": ["--init", "base", "--downsample", "avgpool"],
    "qst-reference-adapter": ["--init", "reference", "--downsample", "adapter"],
    "qst-reference-avgpool": ["--init", "reference", "--downsample", "avgpool"],
    "lora": None,
}
# Learning-rate grids (first = the preset's): the same number of trials for every method.
LR_GRID = {"qst": [5e-4, 1e-3], "lora": [2e-4, 5e-4]}


def peak_sampler(proc, peaks):
    while proc.poll() is None:
        try:
            for line in open(f"/proc/{proc.pid}/status"):
                k, _, v = line.partition(":")
                if k in ("VmHWM", "RssAnon"):
                    peaks[k] = max(peaks.get(k, 0), int(v.split()[0]) * 1024)
        except OSError:
            pass
        time.sleep(0.1)


def run(cmd, log):
    """Runs cmd (output to log); returns (wall seconds, peaks). Exits with the log's path on failure."""
    peaks, start = {}, time.time()
    with open(log, "w") as lf:
        p = subprocess.Popen(cmd, stdout=lf, stderr=subprocess.STDOUT)
        t = threading.Thread(target=peak_sampler, args=(p, peaks))
        t.start(); p.wait(); t.join()
    if p.returncode != 0:
        sys.exit(f"bench-accuracy: {' '.join(cmd)} failed, see {log}")
    return time.time() - start, peaks


def wilson(correct, n, z=1.96):
    if n == 0:
        return (0.0, 0.0)
    p = correct / n
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (c - h, c + h)


def f1_interval(f1, predicted, gold, n, draws=2000):
    """95 % bootstrap interval of F1 (positive class 1) resampling the dev set's confusion matrix, which
    the official F1 and the per-class counts determine: TP = F1·(predicted₁ + gold₁)/2."""
    tp = round(f1 * (predicted[1] + gold[1]) / 2)
    fp, fn = predicted[1] - tp, gold[1] - tp
    cells = [tp, fp, fn, n - tp - fp - fn]
    rng, vals = random.Random(0), []
    for _ in range(draws):
        c = [0, 0, 0, 0]
        for k in rng.choices(range(4), weights=cells, k=n):
            c[k] += 1
        vals.append(2 * c[0] / max(1, 2 * c[0] + c[1] + c[2]))
    vals.sort()
    return (vals[int(0.025 * draws)], vals[int(0.975 * draws) - 1])


def split_tsv(src, dst_train, dst_heldout, heldout, limit, seed=0):
    """A seeded held-out slice of train (never dev) for early stopping and the learning-rate choice."""
    lines = open(src, encoding="utf-8-sig").read().splitlines()
    header, rows = lines[0], [r for r in lines[1:] if r.strip()]
    random.Random(seed).shuffle(rows)
    held, rest = rows[:heldout], rows[heldout:]
    if limit:
        rest = rest[:limit]
    for path, part in ((dst_train, rest), (dst_heldout, held)):
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join([header] + part) + "\n")
    return len(rest), len(held)


def tune(b, bins, nf4, method, common, out, lr, log):
    """One training run; returns its summary with wall time and peaks."""
    if METHODS[method] is None:
        cmd = [f"{bins}/qst-tune", nf4, "--method", "lora", "--lora-r", "8"]
    else:
        side = out + "-side"
        subprocess.run([f"{bins}/qst-init-side", nf4, "-o", side] + METHODS[method], check=True,
                       stdout=subprocess.DEVNULL)
        cmd = [f"{bins}/qst-tune", nf4, side]
    cmd += common + ["-o", out, "--json"] + (["--lr", str(lr)] if lr else [])
    wall, peaks = run(cmd, log)
    s = json.load(open(out + "/summary.json"))
    s.update(wallSeconds=wall, peakRSSSampled=peaks.get("VmHWM", 0), peakAnon=peaks.get("RssAnon", 0))
    return s


def glue(args, b, results):
    bins, nf4, data, out = args["bin"], args["nf4"], args["data"], args["out"]
    for task in args["tasks"]:
        tr, ho = f"{out}/{task}-train.tsv", f"{out}/{task}-heldout.tsv"
        n_train, n_held = split_tsv(f"{data}/{task}/train.tsv", tr, ho, b["heldout"], b["train_limit"])
        budget = ["--steps", str(b["steps"])] if b["steps"] else ["--epochs", str(b["epochs"])]
        common = ["--task", task, "--data", tr, "--eval", ho, "--eval-every", str(b["eval_every"]),
                  "--patience", str(b["patience"]), "--batch-size", str(b["batch"])] + budget
        for method in args["methods"]:
            # One trial keeps the preset's own rate (None); more search the method's grid.
            grid = LR_GRID["lora" if METHODS[method] is None else "qst"][: b["lrs"]] if b["lrs"] > 1 else [None]
            trials = []
            for lr in grid:
                tag = f"{task}-{method}-lr{lr or 'preset'}"
                print(f"bench-accuracy: {tag}: training on {n_train}, held out {n_held}", file=sys.stderr)
                trials.append((tune(b, bins, nf4, method, common, f"{out}/{tag}", lr, f"{out}/{tag}.log"), tag, lr))
            best, tag, lr = max(trials, key=lambda t: t[0].get("bestMetric") or -1e9)
            dev = [f"{bins}/qst-eval", "glue", nf4, "--task", task, "--data", f"{data}/{task}/dev.tsv", "--json",
                   "--lora" if METHODS[method] is None else "--side", f"{out}/{tag}/best"]
            if b["dev_limit"]:
                dev += ["--limit", str(b["dev_limit"])]
            with open(f"{out}/{tag}-dev.json", "w") as f:
                subprocess.run(dev, check=True, stdout=f)
            r = json.load(open(f"{out}/{tag}-dev.json"))
            metric = r["officialMetrics"][0]
            value, n = r["metrics"][metric], r["examples"]
            if metric == "f1":
                ci = f1_interval(value, r["predictedCounts"], r["goldCounts"], n)
            else:
                ci = wilson(round(value * n), n)
            results.append(dict(task=task, method=method, lr=lr or "preset", metric=metric, value=value, ci95=ci,
                                devExamples=n, accuracy=r["metrics"].get("accuracy"), heldoutBest=best.get("bestMetric"),
                                bestStep=best.get("bestStep"), steps=best["steps"], trainSeconds=best["trainSeconds"],
                                wallSeconds=sum(t[0]["wallSeconds"] for t in trials), peakRSS=best["peakRSSSampled"],
                                peakAnon=best["peakAnon"], trials=len(trials)))


def alpaca(args, b, curves, mmlu):
    bins, nf4, out = args["bin"], args["nf4"], args["out"]
    chat = f"{out}/alpaca-chat"
    subprocess.run([args["repo"] + "/Scripts/alpaca-to-chat", args["alpaca"], chat], check=True, stdout=subprocess.DEVNULL)
    budget = ["--steps", str(b["alpaca_steps"])] if b["alpaca_steps"] else ["--epochs", "1"]
    common = ["--preset", "instruct", "--data", f"{chat}/train.jsonl", "--eval", f"{chat}/val.jsonl",
              "--eval-every", str(b["alpaca_eval_every"]), "--eval-limit", str(b["alpaca_val"]), "--batch-size", "8",
              "--max-length", "256", "--eval-base"] + budget
    for method in args["methods"]:
        tag = f"alpaca-{method}"
        print(f"bench-accuracy: {tag}", file=sys.stderr)
        # The frozen model's loss is measured once per QST run (--eval-base); LoRA runs do not offer it.
        own = common if METHODS[method] is not None else [a for a in common if a != "--eval-base"]
        s = tune(b, bins, nf4, method, own, f"{out}/{tag}", None, f"{out}/{tag}.log")
        evals = [json.loads(l) for l in open(f"{out}/{tag}/log.jsonl") if '"eval"' in l]
        curves.append(dict(method=method, frozen=(s.get("zeroShotEval") or {}).get("loss"),
                           curve=[(e["step"], e["loss"]) for e in evals], trainSeconds=s["trainSeconds"],
                           peakRSS=s["peakRSSSampled"]))
    subjects = sorted(f[: -len("_test.csv")] for f in os.listdir(args["mmlu"] + "/test") if f.endswith("_test.csv"))
    if b["mmlu_subjects"]:
        subjects = subjects[: b["mmlu_subjects"]]
    base = [f"{bins}/qst-eval", "choice", nf4, "--mmlu", args["mmlu"], "--shots", "5", "--json", "--subjects"] + subjects
    if b["mmlu_limit"]:
        base += ["--limit", str(b["mmlu_limit"])]
    for who in ["frozen"] + [m for m in args["methods"] if METHODS[m] is not None]:
        cmd = base + ([] if who == "frozen" else ["--side", f"{out}/alpaca-{who}/best"])
        r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        mmlu.append(dict(model=who, accuracy=r["accuracy"], questions=r["questions"],
                         ci95=wilson(r["correct"], r["questions"]), subjects=len(subjects)))


def report(args, results, curves, mmlu):
    pct = lambda x: f"{100 * x:.1f}"
    md = [f"Budget: **{args['budget']}**" + (" (smoke test: the numbers do NOT test the paper's claim)"
                                              if args["budget"] == "quick" else ""), "",
          "| task | method | lr | dev metric | value [95 % CI] | dev n | best step / steps | train s | wall s | peak RSS |",
          "|---|---|---|---|---|---:|---|---:|---:|---:|"]
    for r in results:
        md.append(f"| {r['task']} | {r['method']} | {r['lr']} | {r['metric']} | {pct(r['value'])} "
                  f"[{pct(r['ci95'][0])}, {pct(r['ci95'][1])}] | {r['devExamples']} | {r['bestStep']} / {r['steps']} | "
                  f"{r['trainSeconds']:.0f} | {r['wallSeconds']:.0f} | {r['peakRSS'] / 2**20:.0f} MiB |")
    if curves:
        md += ["", "Alpaca validation loss (chat records, loss on assistant turns) by step:", "",
               "| method | frozen | curve (step: loss) | train s | peak RSS |", "|---|---:|---|---:|---:|"]
        for c in curves:
            fz = f"{c['frozen']:.4f}" if c["frozen"] else "—"
            md.append(f"| {c['method']} | {fz} | " + ", ".join(f"{s}: {l:.4f}" for s, l in c["curve"]) +
                      f" | {c['trainSeconds']:.0f} | {c['peakRSS'] / 2**20:.0f} MiB |")
    if mmlu:
        md += ["", "5-shot MMLU (qst-eval choice), frozen model and after Alpaca tuning:", "",
               "| model | accuracy [95 % CI] | questions | subjects |", "|---|---|---:|---:|"]
        for m in mmlu:
            md.append(f"| {m['model']} | {pct(m['accuracy'])} [{pct(m['ci95'][0])}, {pct(m['ci95'][1])}] | "
                      f"{m['questions']} | {m['subjects']} |")
    text = "\n".join(md) + "\n"
    open(args["out"] + "/bench-accuracy.md", "w").write(text)
    json.dump(dict(budget=args["budget"], glue=results, alpaca=curves, mmlu=mmlu),
              open(args["out"] + "/bench-accuracy.json", "w"), indent=1)
    print(text)


def main():
    args = json.loads(sys.argv[1])
    b = BUDGETS[args["budget"]]
    for m in args["methods"]:
        if m not in METHODS:
            sys.exit(f"bench-accuracy: unknown method {m} (one of {', '.join(METHODS)})")
    results, curves, mmlu = [], [], []
    glue(args, b, results)
    if not args["skip_alpaca"]:
        alpaca(args, b, curves, mmlu)
    report(args, results, curves, mmlu)


if __name__ == "__main__":
    main()
