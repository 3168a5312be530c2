#!/usr/bin/env python3
"""Build the fuzzers' seed corpora from the real and golden files (Scripts/fuzz calls this).

    fuzz_seeds.py REPO OUTDIR [BIN]

Writes OUTDIR/<target>/<name> for the five targets of Fuzz/Package.swift. Sources: the golden .qst4
and safetensors files of Formats/golden, the tiny models (QST_TINY_MODELS), the real model's
tokenizer.json cut down to a few hundred tokens (QST_MODEL_F32), the SST-2 sample, and — when BIN holds
the built tools — an adapter, a side folder and a merged container made from the tiny LLaMA.
Seeds stay small (libFuzzer runs slower on big inputs); one input standing for several files joins
them with the separator line of Fuzz/Sources/FuzzSupport/FuzzInput.swift. Standard library only.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

SEP = b"\n--qst-fuzz-part--\n"


def put(out, target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def small_tokenizer(tok, keep=400, merges=200):
    """The real tokenizer.json with its vocabulary and merges cut short (every other field intact)."""
    model = tok["model"]
    vocab = {t: i for t, i in model["vocab"].items() if i < keep}
    have = set(vocab)
    kept = []
    for m in model.get("merges", []):
        pair = m.split(" ") if isinstance(m, str) else m
        if len(pair) == 2 and pair[0] in have and pair[1] in have and pair[0] + pair[1] in have:
            kept.append(m)
        if len(kept) >= merges:
            break
    model["vocab"], model["merges"] = vocab, kept
    tok["added_tokens"] = [a for a in tok.get("added_tokens", []) if a["id"] < keep]
    return tok


def main():
    repo, out = sys.argv[1], sys.argv[2]
    bin_dir = sys.argv[3] if len(sys.argv) > 3 else ""
    golden = os.path.join(repo, "Formats", "golden")
    tiny = os.environ.get("QST_TINY_MODELS", os.path.expanduser("~/.cache/qst/tiny-models"))
    real = os.environ.get("QST_MODEL_F32", "")

    # safetensors: the golden source, the small tiny models.
    put(out, "safetensors", "golden-source", read(os.path.join(golden, "source", "model.safetensors")))
    for m in ["tiny-llama-bf16", "tiny-llama-sharded/model-00002-of-00002"]:
        p = os.path.join(tiny, m if m.endswith("2") else m + "/model") + ".safetensors"
        if os.path.exists(p):
            put(out, "safetensors", m.replace("/", "-"), read(p))
    put(out, "safetensors", "empty-header", b"\x02\x00\x00\x00\x00\x00\x00\x00{}")

    # .qst4: the golden containers.
    for name in ["tiny.qst4", "tiny-nodq.qst4"]:
        put(out, "qst4", name, read(os.path.join(golden, name)))

    # tokenizer: a cut-down real tokenizer + its config; the minimal BPE of the unit tests.
    cfg_path = os.path.join(real, "tokenizer_config.json")
    if real and os.path.exists(os.path.join(real, "tokenizer.json")):
        tok = small_tokenizer(json.loads(read(os.path.join(real, "tokenizer.json"))))
        cfg = read(cfg_path) if os.path.exists(cfg_path) else b"{}"
        put(out, "tokenizer", "smollm2-cut", json.dumps(tok).encode() + SEP + cfg + SEP + "Hi <|im_start|>ünï 42".encode())
    put(out, "tokenizer", "minimal-bpe",
        b'{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "c": 2, "ab": 3, "bc": 4}, "merges": ["a b", "b c"]}}')

    # records: JSONL of each record kind, an Alpaca array, GLUE TSV.
    jsonl = "\n".join(json.dumps(r) for r in [
        {"text": "hello"}, {"prompt": "2+2=", "completion": " 4"},
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
        {"instruction": "Add", "input": "1 1", "output": "2"}]) + "\n"
    put(out, "records", "kinds.jsonl", jsonl.encode())
    put(out, "records", "alpaca.json", json.dumps([{"instruction": "Say hi", "input": "", "output": "hi"}]).encode())
    sst2 = os.path.join(repo, "Scripts", "data", "sst2", "dev.tsv")
    if os.path.exists(sst2):
        put(out, "records", "sst2.tsv", b"".join(read(sst2).splitlines(True)[:6]))
    put(out, "records", "rte.tsv", b"index\tsentence1\tsentence2\tlabel\n0\tA cat.\tAn animal.\tentailment\n")

    # side: adapter_config.json, side_config.json, weights — from the tools when they are built.
    side_cfg = json.dumps({"base": {"hiddenSize": 64, "layerCount": 2, "attentionHeads": 4, "keyValueHeads": 2,
                                    "intermediateSize": 128, "vocabSize": 300, "rmsNormEps": 1e-5,
                                    "ropeTheta": 10000, "hiddenAct": "silu"},
                           "r": 2, "downsample": "linear", "adapterHidden": 4, "activation": "swish",
                           "dropout": 0.1, "seed": 0}).encode()
    put(out, "side", "side-config-only", SEP + side_cfg + SEP)
    tools = ["qst-quantize", "qst-init-side", "qst-export"]
    llama = os.path.join(tiny, "tiny-llama")
    if bin_dir and all(os.access(os.path.join(bin_dir, t), os.X_OK) for t in tools) and os.path.isdir(llama):
        work = tempfile.mkdtemp(prefix="qst-fuzz-seeds-")
        try:
            def tool(*args):
                subprocess.run([os.path.join(bin_dir, args[0])] + list(args[1:]), check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            base, side, adapter, merged = (os.path.join(work, n) for n in ["base.qst4", "side", "adapter", "tuned.qst4"])
            tool("qst-quantize", llama, base)
            tool("qst-init-side", base, "-o", side, "--r", "4", "--downsample", "linear")
            tool("qst-export", side, "-o", adapter, "--base", base, "--dtype", "bf16")
            tool("qst-export", adapter, "--merge", base, "-o", merged)
            put(out, "side", "adapter", read(os.path.join(adapter, "adapter_config.json")) + SEP + SEP
                + read(os.path.join(adapter, "adapter_model.safetensors")))
            put(out, "side", "side-folder", SEP + read(os.path.join(side, "side_config.json")) + SEP
                + read(os.path.join(side, "side.safetensors")))
            put(out, "qst4", "tiny-llama-merged.qst4", read(merged))
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
