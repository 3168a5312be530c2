#!/usr/bin/env python3
"""The chart of Scripts/bench-paper (BENCHMARKS.md §6): memory and speed bars per method, accuracy beside
them, drawn from bench-paper.json as a standalone SVG (no plotting library).

    bench_paper_chart.py RESULTS.json OUT.svg
"""
import json
import sys
from html import escape

LABELS = {"qst-adapter": "QST, adapter", "qst-avgpool": "QST, avgpool", "lora": "LoRA r 8",
          "lora-ckpt": "LoRA r 8 + checkpointing"}
COLORS = {"sst2": "#4c78a8", "alpaca": "#f58518"}


def panel(x0, y0, w, title, unit, rows, fmt, better):
    """Horizontal bars: rows = [(method, [(task, value)])]; returns SVG elements."""
    vmax = max(v for _, vals in rows for _, v in vals if v is not None) or 1
    bar_h, gap = 11, 10
    out = [f'<text x="{x0}" y="{y0}" font-weight="bold">{escape(title)}</text>',
           f'<text x="{x0}" y="{y0 + 14}" fill="#555" font-size="11">{escape(unit)} — {better}</text>']
    for i, (_, vals) in enumerate(rows):
        # Every method gets a two-bar slot, so rows line up across panels; a lone bar sits in the middle.
        y = y0 + 28 + i * (2 * (bar_h + 1) + gap) + (bar_h + 1) * (2 - len(vals)) / 2
        for task, v in vals:
            if v is None:
                continue
            bw = (w - 60) * v / vmax
            out.append(f'<rect x="{x0}" y="{y:.1f}" width="{bw:.1f}" height="{bar_h}" fill="{COLORS[task]}">'
                       f'<title>{task}: {fmt(v)}</title></rect>'
                       f'<text x="{x0 + bw + 4:.1f}" y="{y + bar_h - 2:.1f}" font-size="11">{fmt(v)}</text>')
            y += bar_h + 1
    return out


def main():
    src, dst = sys.argv[1], sys.argv[2]
    doc = json.load(open(src))
    res = doc["results"]
    methods = list(res)
    mib = lambda b: b / 2 ** 20
    panels = [
        ("peak anonymous memory", "MiB", "shorter is better",
         [(m, [("sst2", mib(res[m]["sst2"]["peak_anon"])), ("alpaca", mib(res[m]["alpaca"]["peak_anon"]))]) for m in methods],
         lambda v: f"{v:,.0f}"),
        ("seconds per optimizer step", "s", "shorter is better",
         [(m, [("sst2", res[m]["sst2"]["sec_per_step"]), ("alpaca", res[m]["alpaca"]["sec_per_step"])]) for m in methods],
         lambda v: f"{v:.2f}"),
        ("SST-2 dev accuracy", "%", "longer is better",
         [(m, [("sst2", 100 * res[m]["sst2"]["accuracy"] if res[m]["sst2"]["accuracy"] is not None else None)])
          for m in methods], lambda v: f"{v:.1f}"),
        ("Alpaca validation loss", "nats/token", "shorter is better",
         [(m, [("alpaca", res[m]["alpaca"]["eval_loss"])]) for m in methods], lambda v: f"{v:.3f}"),
    ]
    left, pw, top = 170, 190, 64
    per_method = 2 * 12 + 10   # two bars of 11 + 1 and the gap, as in panel()
    H = top + 28 + per_method * len(methods) + 50
    W = left + pw * len(panels) + 10
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15">QST against LoRA in the same engine: '
           f'SmolLM2-135M NF4, batch {doc["batch"]} × {doc["seq_len"]}</text>',
           f'<text x="{W / 2}" y="40" text-anchor="middle" font-size="11" fill="#555">SST-2: {doc["steps"]} steps, '
           f'Alpaca: {doc["alpaca_steps"]} steps (instruct preset); Scripts/bench-paper, BENCHMARKS.md §6</text>']
    y = top + 28
    for m in methods:
        svg.append(f'<text x="{left - 10}" y="{y + 16}" text-anchor="end">{escape(LABELS.get(m, m))}</text>')
        y += per_method
    for i, (title, unit, better, rows, fmt) in enumerate(panels):
        svg += panel(left + i * pw, top, pw - 20, title, unit, rows, fmt, better)
    ly = H - 20
    for j, (task, name) in enumerate((("sst2", "SST-2"), ("alpaca", "Alpaca"))):
        svg.append(f'<rect x="{left + j * 110}" y="{ly - 10}" width="12" height="12" fill="{COLORS[task]}"/>'
                   f'<text x="{left + j * 110 + 18}" y="{ly}">{name}</text>')
    svg.append("</svg>")
    with open(dst, "w") as f:
        f.write("\n".join(svg) + "\n")


if __name__ == "__main__":
    main()
