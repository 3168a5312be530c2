#!/usr/bin/env python3
"""Early stopping by held-out accuracy or by held-out loss, compared on one training run (issue 15): driven by
Scripts/bench-best-metric, which passes the tools and the NF4 container. Standard library only.

The criterion only decides which evaluation's weights are kept and when the run ends; the training itself is the
same. So one run with bench-accuracy's full-budget split and settings but no early stopping, evaluated on the
held-out slice every N steps and checkpointed at every evaluation (each checkpoint's weights copied aside before
the next replaces it), holds both criteria: each is replayed on the logged evaluations with qst-tune's rule (a
strictly better value resets the count, `patience` evaluations without one stop the run), and the checkpoints
each would have kept, and the end of the epoch, are scored once on the full dev set.
"""
import json, os, shutil, subprocess, sys, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_accuracy import BUDGETS, METHODS, run, score_dev, split_tsv  # noqa: E402

# The two criteria as qst-tune scores an evaluation (TrainingConfig.BestMetric.score on a classifying run): larger is
# better.
CRITERIA = {"accuracy": lambda e: e["accuracy"], "loss": lambda e: -e["loss"]}


def replay(evals, score, patience):
    """qst-tune's rule (Trainer.evaluateAndKeepBest) on logged evaluations: (kept step, stop step)."""
    best, kept, without = None, None, 0
    for e in evals:
        s = score(e)
        if best is None or s > best:
            best, kept, without = s, e["step"], 0
        else:
            without += 1
        if patience > 0 and without >= patience:
            return kept, e["step"]
    return kept, evals[-1]["step"]


def keep_checkpoints(run_dir, keep, stop):
    """Copies the side weights of every checkpoint qst-tune writes (it removes the previous one when it writes the
    next, an evaluation interval later) to keep/step-N, until `stop` is set; then one last pass."""
    while True:
        last_pass = stop.is_set()
        for entry in sorted(os.listdir(run_dir)) if os.path.isdir(run_dir) else []:
            src = os.path.join(run_dir, entry)
            if not entry.startswith("checkpoint-") or not os.path.exists(src + "/trainer_state.json"):
                continue
            dst = os.path.join(keep, f"step-{int(entry.split('-')[1])}")
            if not os.path.isdir(dst):
                try:
                    os.makedirs(dst + ".part", exist_ok=True)
                    for f in ("side.safetensors", "side_config.json"):
                        shutil.copy(os.path.join(src, f), dst + ".part")
                    os.rename(dst + ".part", dst)
                except OSError:  # replaced while copying: the next pass sees the new one
                    shutil.rmtree(dst + ".part", ignore_errors=True)
        if last_pass:
            return
        time.sleep(1)


def replay_logs(logs, patience):
    """--replay: both criteria on runs already made (their run/log.jsonl), without scoring anything on dev."""
    print("| run | evaluations | criterion | patience | kept step | stops at | held-out accuracy / loss there |")
    print("|---|---:|---|---:|---:|---:|---|")
    for log in logs:
        evals = [e for e in map(json.loads, open(log)) if e.get("kind") == "eval" and e.get("accuracy") is not None]
        if not evals:
            sys.exit(f"bench-best-metric: no held-out accuracies in {log}")
        name = os.path.basename(os.path.dirname(os.path.abspath(log)))
        for crit, score in CRITERIA.items():
            for p in patience:
                kept, stop = replay(evals, score, p)
                e = next(x for x in evals if x["step"] == kept)
                # The log ends where the run stopped (its own criterion, or the schedule): past it, unknown.
                ran = "" if stop < evals[-1]["step"] else " (end of the log)"
                print(f"| {name} | {len(evals)} | {crit} | {p} | {kept} | {stop}{ran} | "
                      f"{100 * e['accuracy']:.1f} % / {e['loss']:.4f} |")


def main():
    a = json.loads(sys.argv[1])
    if a.get("replay"):
        return replay_logs(a["replay"], a["patience"])
    bins, nf4, data, out, task, method = a["bin"], a["nf4"], a["data"], a["out"], a["task"], a["method"]
    if METHODS.get(method) is None:
        sys.exit(f"bench-best-metric: method is one of the QST variants ({', '.join(m for m in METHODS if METHODS[m])})")
    budget = BUDGETS[a["budget"]]
    b = {**budget, **budget.get("per_task", {}).get(task, {})}
    if a.get("epochs"):  # --epochs: that many epochs instead of the budget's steps or epochs
        b["steps"], b["epochs"] = None, a["epochs"]
    os.makedirs(out, exist_ok=True)
    tr, ho = f"{out}/{task}-train.tsv", f"{out}/{task}-heldout.tsv"
    n_train, n_held = split_tsv(f"{data}/{task}/train.tsv", tr, ho, b["heldout"], b["train_limit"])
    side, run_dir, keep = f"{out}/side", f"{out}/run", f"{out}/kept"
    for d in (side, run_dir, keep):
        shutil.rmtree(d, ignore_errors=True)
    os.makedirs(keep)
    subprocess.run([f"{bins}/qst-init-side", nf4, "-o", side] + METHODS[method], check=True, stdout=subprocess.DEVNULL)
    every = str(b["eval_every"])
    cmd = [f"{bins}/qst-tune", nf4, side, "--task", task, "--data", tr, "--eval", ho, "--eval-every", every,
           "--save-every", every, "--batch-size", str(b["batch"]), "-o", run_dir, "--json"]
    cmd += ["--steps", str(b["steps"])] if b["steps"] else ["--epochs", str(b["epochs"])]
    print(f"bench-best-metric: {task} {method}: training on {n_train}, held out {n_held}, no early stopping",
          file=sys.stderr)
    stop = threading.Event()
    keeper = threading.Thread(target=keep_checkpoints, args=(run_dir, keep, stop), daemon=True)
    keeper.start()
    wall, cpu, _ = run(cmd, f"{out}/train.log")
    stop.set()
    keeper.join()
    evals = [e for e in map(json.loads, open(run_dir + "/log.jsonl")) if e.get("kind") == "eval"]
    if not evals or any(e.get("accuracy") is None for e in evals):
        sys.exit(f"bench-best-metric: no held-out accuracies in {run_dir}/log.jsonl")
    rows = []
    for name, score in CRITERIA.items():
        for patience in a["patience"]:
            kept, stop = replay(evals, score, patience)
            rows.append(dict(criterion=name, patience=patience, kept=kept, stop=stop))
    rows.append(dict(criterion="none (end of training)", patience=0, kept="final", stop="final"))
    scored = {}
    for r in rows:
        key = r["kept"]
        if key not in scored:
            folder = f"{run_dir}/final" if key == "final" else f"{keep}/step-{key}"
            if not os.path.isdir(folder):
                sys.exit(f"bench-best-metric: the weights of step {key} were not kept ({folder})")
            _, metric, value, ci, n, _, _ = score_dev(bins, nf4, task, f"{data}/{task}/dev.tsv", ["--side", folder],
                                                      b["dev_limit"], f"{out}/dev-{key}.json")
            scored[key] = dict(metric=metric, value=value, ci95=ci, n=n)
        r.update(scored[key])
        held = next((e for e in evals if e["step"] == key), None)
        r["heldoutAccuracy"], r["heldoutLoss"] = (held["accuracy"], held["loss"]) if held else (None, None)
    pct = lambda x: f"{100 * x:.1f}"
    md = [("SMOKE TEST (--quick): these numbers say nothing. " if a["budget"] == "quick" else "") +
          f"{task}, {method}: {n_train} trained, {n_held} held out, evaluation every {every} steps, "
          f"one run of {len(evals)} evaluations ({wall:.0f} s wall, {cpu:.0f} CPU s); dev n = {rows[0]['n']}", "",
          "| criterion | patience | kept step | stops at | held-out accuracy / loss there | dev metric | value [95 % CI] |",
          "|---|---:|---:|---:|---|---|---|"]
    for r in rows:
        h = f"{pct(r['heldoutAccuracy'])} % / {r['heldoutLoss']:.4f}" if r["heldoutLoss"] is not None else "—"
        md.append(f"| {r['criterion']} | {r['patience'] or '—'} | {r['kept']} | {r['stop']} | {h} | {r['metric']} | "
                  f"{pct(r['value'])} [{pct(r['ci95'][0])}, {pct(r['ci95'][1])}] |")
    md += ["", "Held-out evaluations (step: accuracy %, loss): " +
           "; ".join(f"{e['step']}: {pct(e['accuracy'])}, {e['loss']:.4f}" for e in evals)]
    text = "\n".join(md) + "\n"
    open(f"{out}/bench-best-metric.md", "w").write(text)
    json.dump(dict(task=task, method=method, rows=rows, evals=evals, wallSeconds=wall, cpuSeconds=cpu),
              open(f"{out}/bench-best-metric.json", "w"), indent=1)
    print(text)


if __name__ == "__main__":
    main()
