#!/usr/bin/env python3
"""The paper's accuracy table (issue 15): driven by Scripts/bench-accuracy, which builds the tools and the NF4
container and passes their paths. Standard library only (the numbers come from the QST tools).

For every GLUE task (SST-2, RTE, MRPC) and method (QST with both initialisations × adapter/avgpool
downsamplers, LoRA r 8 in the same engine): train on train.tsv minus a held-out slice, evaluate on the slice
every N steps, keep the best checkpoint, stop early (--patience); choose the learning rate on the slice (the
same grid size for every method); score the chosen best checkpoint once on the full dev set with the official
metric (qst-eval glue) and a 95 % confidence interval (Wilson for accuracy; a bootstrap over the confusion
matrix for F1). Wall time, CPU time (user + sys of the child: comparable between methods on a shared
machine, where wall time is not) and peak memory (sampled from /proc) per training run. Then Alpaca (converted to
chat records, Scripts/alpaca-to-chat): validation-loss curve per method, and 5-shot MMLU (qst-eval choice)
of the frozen model and of every Alpaca-tuned model. The tables are rewritten after every finished run,
so a run cut off part-way still leaves its results.
"""
import csv, json, os, random, resource, shutil, subprocess, sys, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qst_py.intervals import paired_difference, wilson  # noqa: E402

BUDGETS = {
    # A smoke-sized budget that runs end to end in minutes; its numbers say nothing about the paper's claim.
    "quick": dict(train_limit=160, heldout=32, steps=12, epochs=None, eval_every=6, patience=2, batch=8,
                  dev_limit=64, lrs=1, alpaca_steps=8, alpaca_eval_every=4, alpaca_val=24, mmlu_subjects=2,
                  mmlu_limit=10),
    # What fits in about an hour of 2 shared cores: full dev sets and official metrics, early stopping on a
    # held-out slice of train, the preset's learning rate for every method (the same search budget), and a
    # capped number of steps per task (a fraction of an epoch: RTE 48 × 16 = 768 of 2,330 examples, MRPC 768
    # of 3,508, SST-2 4,800 of a 10,000-example subset). LoRA backpropagates through the base: several times
    # QST's cost per step. MMLU on a fixed set of 10 subjects × 40 questions (400: a 95 % CI of about ±4).
    "medium": dict(train_limit=0, heldout=160, steps=48, epochs=None, eval_every=12, patience=3, batch=16,
                   dev_limit=None, lrs=1, alpaca_steps=80, alpaca_eval_every=20, alpaca_val=100,
                   mmlu_subjects=["high_school_geography", "high_school_psychology", "high_school_biology",
                                  "marketing", "nutrition", "prehistory", "sociology", "world_religions",
                                  "elementary_mathematics", "philosophy"], mmlu_limit=40,
                   per_task=dict(sst2=dict(train_limit=10000, heldout=400, steps=300, eval_every=50))),
    # The paper-sized run: hours on 2 cores. RTE (2,490 pairs) and MRPC (3,668) train for 3 epochs, evaluated
    # every 50 steps (an epoch is 125 / 200 steps of 16); SST-2 (67,349 sentences) for 1 epoch, evaluated every 250
    # steps: its held-out accuracy stops rising well inside one epoch, and 3 epochs of LoRA are ~10 CPU hours here.
    "full": dict(train_limit=0, heldout=500, steps=None, epochs=3, eval_every=50, patience=3, batch=16,
                 dev_limit=None, lrs=2, alpaca_steps=None, alpaca_eval_every=25, alpaca_val=200,
                 mmlu_subjects=None, mmlu_limit=None,
                 per_task=dict(sst2=dict(epochs=1, eval_every=250))),
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


def children_cpu():
    """User + sys seconds of every reaped child so far; one child runs at a time, so deltas are per run."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(cmd, log):
    """Runs cmd (output to log); returns (wall seconds, CPU seconds, peaks). Exits with the log's path on
    failure."""
    peaks, start, cpu0 = {}, time.time(), children_cpu()
    with open(log, "w") as lf:
        p = subprocess.Popen(cmd, stdout=lf, stderr=subprocess.STDOUT)
        t = threading.Thread(target=peak_sampler, args=(p, peaks))
        t.start(); p.wait(); t.join()
    if p.returncode != 0:
        sys.exit(f"bench-accuracy: {' '.join(cmd)} failed, see {log}")
    return time.time() - start, children_cpu() - cpu0, peaks


def run_json(cmd, dst):
    """Runs cmd with its JSON output to dst; returns (parsed output, wall seconds, CPU seconds)."""
    start, cpu0 = time.time(), children_cpu()
    with open(dst, "w") as f:
        p = subprocess.run(cmd, stdout=f, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.exit(f"bench-accuracy: {' '.join(cmd)} failed: {p.stderr.strip()[-2000:]}")
    return json.load(open(dst)), time.time() - start, children_cpu() - cpu0


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


def score_dev(bins, nf4, task, dev_tsv, weights, limit, dst):
    """Scores weights (["--side", DIR] or ["--lora", DIR]) once on the dev set with the task's official metric:
    (qst-eval's JSON, metric, value, 95 % CI, examples, wall s, CPU s); the JSON is also written to dst."""
    cmd = [f"{bins}/qst-eval", "glue", nf4, "--task", task, "--data", dev_tsv, "--json"] + weights
    r, wall, cpu = run_json(cmd + (["--limit", str(limit)] if limit else []), dst)
    metric = r["officialMetrics"][0]
    value, n = r["metrics"][metric], r["examples"]
    if metric == "f1":
        ci = f1_interval(value, r["predictedCounts"], r["goldCounts"], n)
    else:
        ci = wilson(round(value * n), n)
    return r, metric, value, ci, n, wall, cpu


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


def tune(b, bins, nf4, method, common, out, lr, log, cache_base=False):
    """One training run; returns its summary with wall time and peaks."""
    # A pooling downsampler leaves nothing that trains inside the base: its epochs after the first read the stored
    # states instead of rerunning the frozen forward (bit-identical weights, README "Reusing the frozen forward"), as a
    # user would run it. One cache per run, so no run is timed on another's cache.
    cache = out + "-basecache" if cache_base and "avgpool" in (METHODS[method] or []) else None
    if METHODS[method] is None:
        cmd = [f"{bins}/qst-tune", nf4, "--method", "lora", "--lora-r", "8"]
    else:
        side = out + "-side"
        subprocess.run([f"{bins}/qst-init-side", nf4, "-o", side] + METHODS[method], check=True,
                       stdout=subprocess.DEVNULL)
        cmd = [f"{bins}/qst-tune", nf4, side]
    if cache:
        shutil.rmtree(cache, ignore_errors=True)
        cmd += ["--cache-base", cache]
    cmd += common + ["-o", out, "--json"] + (["--lr", str(lr)] if lr else [])
    wall, cpu, peaks = run(cmd, log)
    if cache:
        shutil.rmtree(cache, ignore_errors=True)
    s = json.load(open(out + "/summary.json"))
    rates = [e.get("learningRate", 0) for e in map(json.loads, open(out + "/log.jsonl")) if e.get("kind") == "train"]
    s.update(wallSeconds=wall, cpuSeconds=cpu, peakRSSSampled=peaks.get("VmHWM", 0), peakAnon=peaks.get("RssAnon", 0),
             peakLR=max(rates, default=None))
    return s


def glue(args, budget, results, save):
    bins, nf4, data, out = args["bin"], args["nf4"], args["data"], args["out"]
    for task in args["tasks"]:
        b = {**budget, **budget.get("per_task", {}).get(task, {})}
        tr, ho = f"{out}/{task}-train.tsv", f"{out}/{task}-heldout.tsv"
        n_train, n_held = split_tsv(f"{data}/{task}/train.tsv", tr, ho, b["heldout"], b["train_limit"])
        length = ["--steps", str(b["steps"])] if b["steps"] else ["--epochs", str(b["epochs"])]
        common = ["--task", task, "--data", tr, "--eval", ho, "--eval-every", str(b["eval_every"]),
                  "--patience", str(b["patience"]), "--batch-size", str(b["batch"])] + length
        if args.get("best_metric", "accuracy") != "accuracy":
            common += ["--best-metric", args["best_metric"]]
        for method in args["methods"]:
            # One trial keeps the preset's own rate (None); more search the method's grid.
            grid = LR_GRID["lora" if METHODS[method] is None else "qst"][: b["lrs"]] if b["lrs"] > 1 else [None]
            trials = []
            for lr in grid:
                tag = f"{task}-{method}-lr{lr or 'preset'}"
                print(f"bench-accuracy: {tag}: training on {n_train}, held out {n_held}", file=sys.stderr)
                run_summary = tune(b, bins, nf4, method, common, f"{out}/{tag}", lr, f"{out}/{tag}.log", cache_base=True)
                trials.append((run_summary, tag, lr))
            best, tag, lr = max(trials, key=lambda t: t[0].get("bestMetric") or -1e9)
            r, metric, value, ci, n, dev_wall, dev_cpu = score_dev(
                bins, nf4, task, f"{data}/{task}/dev.tsv", ["--lora" if METHODS[method] is None else "--side",
                                                           f"{out}/{tag}/best"], b["dev_limit"], f"{out}/{tag}-dev.json")
            results.append(dict(task=task, method=method, lr=lr or "preset", peakLR=best.get("peakLR"), metric=metric,
                                value=value, ci95=ci, devExamples=n, accuracy=r["metrics"].get("accuracy"),
                                heldoutBest=best.get("bestMetric"), heldoutMetric=args.get("best_metric", "accuracy"),
                                heldoutExamples=n_held, trainExamples=n_train,
                                bestStep=best.get("bestStep"), steps=best["steps"], trainSeconds=best["trainSeconds"],
                                wallSeconds=sum(t[0]["wallSeconds"] for t in trials),
                                cpuSeconds=sum(t[0]["cpuSeconds"] for t in trials), devWallSeconds=dev_wall,
                                devCpuSeconds=dev_cpu, peakRSS=best["peakRSSSampled"], peakAnon=best["peakAnon"],
                                trials=len(trials)))
            save()


def alpaca(args, b, curves, mmlu, save):
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
                           wallSeconds=s["wallSeconds"], cpuSeconds=s["cpuSeconds"], peakRSS=s["peakRSSSampled"],
                           steps=s["steps"], bestStep=s.get("bestStep"), peakLR=s.get("peakLR")))
        save()
    subjects = sorted(f[: -len("_test.csv")] for f in os.listdir(args["mmlu"] + "/test") if f.endswith("_test.csv"))
    if isinstance(b["mmlu_subjects"], list):
        subjects = b["mmlu_subjects"]
    elif b["mmlu_subjects"]:
        subjects = subjects[: b["mmlu_subjects"]]
    base = [f"{bins}/qst-eval", "choice", nf4, "--mmlu", args["mmlu"], "--shots", "5", "--json", "--subjects"] + subjects
    if b["mmlu_limit"]:
        base += ["--limit", str(b["mmlu_limit"])]
    answers = [a for s in subjects for a in mmlu_answers(args["mmlu"], s, b["mmlu_limit"])]
    outcomes = {}
    # LoRA has no decoding cache, so its prompts run whole (~5× the tokens of a run that reuses the shots).
    for who in ["frozen"] + args["methods"]:
        adapter = ["--lora" if METHODS[who] is None else "--side", f"{out}/alpaca-{who}/best"] if who != "frozen" else []
        cmd = base + adapter
        print(f"bench-accuracy: mmlu-{who}: {len(subjects)} subjects", file=sys.stderr)
        r, wall, cpu = run_json(cmd, f"{out}/mmlu-{who}.json")
        predictions = [p for s in r["subjects"] for p in s["predictions"]]
        if len(predictions) != len(answers):
            sys.exit(f"bench-accuracy: mmlu-{who}: {len(predictions)} predictions for {len(answers)} questions")
        outcomes[who] = [int(p == a) for p, a in zip(predictions, answers)]
        if sum(outcomes[who]) != r["correct"]:
            sys.exit(f"bench-accuracy: mmlu-{who}: the predictions do not give the reported {r['correct']} correct")
        # Against the frozen model on the same questions: the paired difference and its interval.
        paired = None if who == "frozen" else paired_difference(outcomes[who], outcomes["frozen"])
        mmlu.append(dict(model=who, accuracy=r["accuracy"], correct=r["correct"], questions=r["questions"],
                         ci95=wilson(r["correct"], r["questions"]), subjects=len(subjects), subjectNames=subjects,
                         vsFrozen=paired, tokensRun=r.get("tokensRun"), tokensReused=r.get("tokensReused"),
                         wallSeconds=wall, cpuSeconds=cpu))
        save()


def mmlu_answers(folder, subject, limit):
    """The answer indices of a subject's test questions in file order (the first `limit` when given)."""
    with open(f"{folder}/test/{subject}_test.csv", newline="") as f:
        rows = list(csv.reader(f))[1:]
    return [int(r[5]) for r in (rows[:limit] if limit else rows)]


def report(args, results, curves, mmlu, final=True):
    """Writes DIR/bench-accuracy.md and .json; called after every finished run (final=False) and at the end."""
    pct = lambda x: f"{100 * x:.1f}"
    lr = lambda r: f"{r['lr']} ({r['peakLR']:g})" if r.get("peakLR") else str(r["lr"])
    md = [f"Budget: **{args['budget']}**" + (f" with {args['glue_length']} on every task" if args.get("glue_length") else "") + (" (smoke test: the numbers do NOT test the paper's claim)"
                                              if args["budget"] == "quick" else "") +
          ("" if final else " — PARTIAL: the run has not finished"), "",
          "| task | method | lr | dev metric | value [95 % CI] | dev n | best step / steps | train s | CPU s | wall s "
          "| peak RSS |", "|---|---|---|---|---|---:|---|---:|---:|---:|---:|"]
    for r in results:
        md.append(f"| {r['task']} | {r['method']} | {lr(r)} | {r['metric']} | {pct(r['value'])} "
                  f"[{pct(r['ci95'][0])}, {pct(r['ci95'][1])}] | {r['devExamples']} | {r['bestStep']} / {r['steps']} | "
                  f"{r['trainSeconds']:.0f} | {r['cpuSeconds']:.0f} | {r['wallSeconds']:.0f} | "
                  f"{r['peakRSS'] / 2**20:.0f} MiB |")
    if curves:
        md += ["", "Alpaca validation loss (chat records, loss on assistant turns) by step:", "",
               "| method | frozen | curve (step: loss) | train s | CPU s | wall s | peak RSS |",
               "|---|---:|---|---:|---:|---:|---:|"]
        for c in curves:
            fz = f"{c['frozen']:.4f}" if c["frozen"] else "—"
            md.append(f"| {c['method']} | {fz} | " + ", ".join(f"{s}: {l:.4f}" for s, l in c["curve"]) +
                      f" | {c['trainSeconds']:.0f} | {c['cpuSeconds']:.0f} | {c['wallSeconds']:.0f} | "
                      f"{c['peakRSS'] / 2**20:.0f} MiB |")
    if mmlu:
        md += ["", "5-shot MMLU (qst-eval choice), frozen model and after Alpaca tuning:", "",
               "| model | accuracy [95 % CI] | − frozen, same questions [95 % CI] | correct / questions | subjects "
               "| CPU s | wall s |", "|---|---|---|---:|---:|---:|---:|"]
        for m in mmlu:
            v = m.get("vsFrozen")
            vs = f"{100 * v[0]:+.2f} [{100 * v[1]:+.2f}, {100 * v[2]:+.2f}]" if v else "—"
            md.append(f"| {m['model']} | {pct(m['accuracy'])} [{pct(m['ci95'][0])}, {pct(m['ci95'][1])}] | {vs} | "
                      f"{m['correct']} / {m['questions']} | {m['subjects']} | {m['cpuSeconds']:.0f} | "
                      f"{m['wallSeconds']:.0f} |")
    text = "\n".join(md) + "\n"
    open(args["out"] + "/bench-accuracy.md", "w").write(text)
    json.dump(dict(budget=args["budget"], finished=final, glue=results, alpaca=curves, mmlu=mmlu),
              open(args["out"] + "/bench-accuracy.json", "w"), indent=1)
    if final:
        print(text)


def main():
    args = json.loads(sys.argv[1])
    b = BUDGETS[args["budget"]]
    if args.get("lrs"):
        b = {**b, "lrs": args["lrs"]}
    # --epochs / --patience: the same GLUE length and early stopping for every task and method (RTE needs
    # more than 3 epochs: BENCHMARKS.md §28), replacing the budget's per-task lengths.
    if args.get("epochs"):
        b = {**b, "epochs": args["epochs"], "steps": None,
             "per_task": {t: {k: v for k, v in o.items() if k not in ("epochs", "steps")}
                          for t, o in b.get("per_task", {}).items()}}
    if args.get("patience"):
        b = {**b, "patience": args["patience"]}
    if args.get("mmlu_limit"):
        b = {**b, "mmlu_limit": args["mmlu_limit"]}
    args["glue_length"] = (f"{b['epochs']} epochs" if b.get("epochs") else f"{b['steps']} steps") + \
        f", patience {b['patience']}" if args.get("epochs") or args.get("patience") else None
    if args.get("best_metric", "accuracy") != "accuracy":
        args["glue_length"] = (args["glue_length"] + ", " if args["glue_length"] else "") + \
            "the best checkpoint and early stopping by held-out loss"
    args["tasks"] = [t for t in args["tasks"] if t]  # --tasks "": Alpaca and MMLU only
    for m in args["methods"]:
        if m not in METHODS:
            sys.exit(f"bench-accuracy: unknown method {m} (one of {', '.join(METHODS)})")
    results, curves, mmlu = [], [], []
    save = lambda: report(args, results, curves, mmlu, final=False)
    glue(args, b, results, save)
    if not args["skip_alpaca"]:
        alpaca(args, b, curves, mmlu, save)
    report(args, results, curves, mmlu)


if __name__ == "__main__":
    main()
