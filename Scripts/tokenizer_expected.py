#!/usr/bin/env python3
"""Expected tokenizations from the Hugging Face `tokenizers` library, for testing QST's Swift tokenizer.

Encode texts (one JSON object per line in OUT.jsonl):
  tokenizer_expected.py --tokenizer TOKENIZER_JSON [inputs...] OUT.jsonl
      {"text": str, "ids": [...], "ids_special": [...], "decoded": str}
      ids          encode(text, add_special_tokens=False).ids
      ids_special  encode(text, add_special_tokens=True).ids   (adds <s> etc. if the post-processor does)
      decoded      decode(ids, skip_special_tokens=False)
  inputs (any mix, in this order of appearance in the output: corpus, texts, files, lines, jsonl):
      --corpus default   the built-in test corpus (see below)
      --text STR         one text (repeatable)
      --file PATH        whole file as one text (repeatable)
      --lines PATH       every line of PATH (without its newline) as one text (repeatable)
      --jsonl PATH       texts from the "text" field of a JSONL file (repeatable)
  Without --tokenizer, only {"text": ...} lines are written (e.g. `--corpus default OUT.jsonl`).

Default corpus (from /work/shared/data, or $QST_DATA): first 200 lines of text/wiki.test.raw and of
text/tinyshakespeare.txt (verbatim, newline kept), 10 multi-line chunks of each, 200 SST-2 dev
sentences, 100 Alpaca records' instruction/input/output, 50 MMLU test questions with choices
(one per subject), and hand-written edge cases (unicode, whitespace, code, digits, contractions,
special tokens inside text).

Train a tiny SentencePiece-style BPE tokenizer (Llama-2 / Mistral layout, byte_fallback):
  tokenizer_expected.py --train-spm OUT_DIR [--style llama2|metaspace] [--vocab-size 500]
      trained on tinyshakespeare.txt; writes OUT_DIR/tokenizer.json and OUT_DIR/tokenizer_config.json.
      vocab: <unk>=0, <s>=1, </s>=2, <0x00>..<0xFF>=3..258, then learned pieces; byte_fallback=true,
      fuse_unk=true; post-processor prepends <s>.
      llama2:    normalizer Sequence[Prepend("▁"), Replace(" ", "▁")], pre_tokenizer null,
                 decoder Sequence[Replace("▁", " "), ByteFallback, Fuse, Strip(" ", 1, 0)]
      metaspace: normalizer null, pre_tokenizer Metaspace("▁", prepend_scheme "first", split false),
                 same decoder (Mistral v0.3 / newer Llama layout)
      Deterministic: the same input gives the same tokenizer.json.
"""
import csv
import glob
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qst_py.venv import ensure_venv  # noqa: E402

ensure_venv(("tokenizers",))

DATA = os.environ.get("QST_DATA") or "/work/shared/data"

EDGE_CASES = [
    "", " ", "  ", "   leading spaces", "trailing spaces   ", "\t", "tab\tseparated\tvalues",
    "\n", "\n\n\n", "line one\nline two", "windows\r\nline\r\nendings", "\r", "mixed \t \n \r\n whitespace",
    "multiple     spaces    between     words", " a", "a ", " \n ",
    "Hello, world!", "hello world", "HELLO WORLD", "Hello World.", "it's", "It's", "I'm", "we're", "they've",
    "you'll", "he'd", "don't", "can't", "won't", "I'LL", "YOU'RE", "SHE'S", "'s 't 're 've 'm 'll 'd",
    "The quick brown fox jumps over the lazy dog.",
    "1", "12", "123", "1234567", "3.14159", "1,000,000", "2024-01-15", "v1.2.3", "0x1F", "1e-5", "10%",
    "phone: +1 (555) 123-4567", "A1B2C3", "x=1+2*3",
    "café", "naïve", "résumé", "Ångström", "Zürich", "façade", "São Paulo", "Ελληνικά", "Русский текст",
    "日本語のテキスト", "中文文本测试", "한국어 텍스트", "مرحبا بالعالم", "שלום עולם", "हिन्दी",
    "e\u0301", "n\u0303o", "a\u0308\u0301", "Z\u0351\u0368\u0306a\u0310l\u0336g\u0327o",
    "😀", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷", "I ❤️ NY", "emoji😀in😀text", "✓ ✗ → ← ∞ ≠ ≤",
    "\u00a0non-breaking\u00a0space", "zero\u200bwidth", "\ufeffBOM", "\u3000ideographic space",
    "def foo(x):\n    return x * 2\n", "for (int i = 0; i < n; ++i) { sum += a[i]; }",
    "if x == 1 and y != 2:\n\tpass", "print(\"Hello, world!\")", "<div class=\"a\">text</div>",
    "SELECT * FROM users WHERE id = 42;", "{\"key\": [1, 2, 3], \"nested\": {\"a\": null}}",
    "https://example.com/path?query=1&b=2#frag", "user@example.com", "C:\\Users\\name\\file.txt",
    "a=b&&c||d", "--flag=value", "$HOME/.cache", "#!/bin/bash", "    indented four", "\t\tindented tabs",
    "<|im_start|>user\nhi<|im_end|>", "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>assistant\n",
    "text <|endoftext|> more text", "<|im_end|><|im_end|>", "<|im_start|", "< |im_start| >",
    "<s>", "</s>", "<unk>", "<s> hello </s>",
    "!!!???...", "---", "___", "...", "a.b.c", "(parenthetical)", "[brackets]", "quote: \"yes\"",
    "‘curly’ “quotes”", "em—dash en–dash", "ellipsis…", "¿Qué?", "¡Hola!",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "ababababababababab",
    "Supercalifragilisticexpialidocious", "antidisestablishmentarianism",
]


def _read_lines(path, n):
    with open(path, encoding="utf-8", newline="") as f:
        out = []
        for line in f:
            out.append(line)
            if len(out) == n:
                break
    return out


def default_corpus():
    texts = []
    for rel in ("text/wiki.test.raw", "text/tinyshakespeare.txt"):
        lines = _read_lines(os.path.join(DATA, rel), 400)
        texts += lines[:200]
        texts += ["".join(lines[200 + 20 * i: 220 + 20 * i]) for i in range(10)]
    with open(os.path.join(DATA, "sst2/dev.tsv"), encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:201]
    texts += [r[0] for r in rows]
    with open(os.path.join(DATA, "alpaca/alpaca_small_2000.json"), encoding="utf-8") as f:
        records = json.load(f)[:100]
    for r in records:
        texts += [r[k] for k in ("instruction", "input", "output") if r.get(k)]
    for path in sorted(glob.glob(os.path.join(DATA, "mmlu/test/*.csv")))[:50]:
        with open(path, encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f))
        header, first = rows[0], rows[1]
        if header[0] == "question":
            q, choices = first[0], first[1:5]
        else:  # original MMLU csvs have no header row
            q, choices = header[0], header[1:5]
        texts.append(q + "\n" + "\n".join(f"{l}. {c}" for l, c in zip("ABCD", choices)) + "\nAnswer:")
    texts += EDGE_CASES
    return texts


def gather_texts(args):
    texts = []
    if args.corpus:
        if args.corpus != "default":
            raise SystemExit(f"--corpus: unknown corpus {args.corpus!r} (only 'default')")
        texts += default_corpus()
    texts += args.text
    for p in args.file:
        with open(p, encoding="utf-8", newline="") as f:
            texts.append(f.read())
    for p in args.lines:
        with open(p, encoding="utf-8", newline="") as f:
            texts += [l.rstrip("\n") for l in f]
    for p in args.jsonl:
        with open(p, encoding="utf-8") as f:
            texts += [json.loads(l)["text"] for l in f if l.strip()]
    return texts


def write_expected(tokenizer_path, texts, out):
    from tokenizers import Tokenizer
    tok = None if tokenizer_path is None else Tokenizer.from_file(tokenizer_path)
    with open(out, "w", encoding="utf-8") as f:
        for t in texts:
            rec = {"text": t}
            if tok is not None:
                ids = tok.encode(t, add_special_tokens=False).ids
                rec["ids"] = ids
                rec["ids_special"] = tok.encode(t, add_special_tokens=True).ids
                rec["decoded"] = tok.decode(ids, skip_special_tokens=False)
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")


def train_spm(out_dir, style, vocab_size):
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    specials = ["<unk>", "<s>", "</s>"]
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    with open(os.path.join(DATA, "text/tinyshakespeare.txt"), encoding="utf-8") as f:
        lines = [l.rstrip("\n") for l in f if l.strip()]
    # Train on whitespace-delimited pieces (as SentencePiece does), each starting with "▁".
    trainer_tok = Tokenizer(models.BPE(unk_token="<unk>"))
    trainer_tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    trainer_tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True)
    trainer = trainers.BpeTrainer(vocab_size=max(vocab_size - len(byte_tokens), 64), special_tokens=specials,
                                  show_progress=False, min_frequency=2)
    trainer_tok.train_from_iterator(lines, trainer)
    learned = json.loads(trainer_tok.to_str())["model"]
    pieces = sorted((i, t) for t, i in learned["vocab"].items() if t not in specials)
    vocab = {t: i for i, t in enumerate(specials + byte_tokens)}
    for _, t in pieces:
        vocab.setdefault(t, len(vocab))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in learned["merges"]]

    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    # Both styles decode the same way in the Hub files (Llama-2 and Mistral v0.3 alike).
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    if style == "llama2":
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    elif style == "metaspace":
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    else:
        raise SystemExit(f"--style: {style!r} is not llama2 or metaspace")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", 1)])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    os.makedirs(out_dir, exist_ok=True)
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    config = {
        "add_bos_token": True, "add_eos_token": False,
        "added_tokens_decoder": {str(i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                                          "single_word": False, "special": True} for i, t in enumerate(specials)},
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": None,
        "clean_up_tokenization_spaces": False, "legacy": False, "model_max_length": 2048,
        "tokenizer_class": "LlamaTokenizer", "sp_model_kwargs": {},
    }
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, ensure_ascii=False)
        f.write("\n")
    return len(vocab)


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?", help="output JSONL (encode mode)")
    ap.add_argument("--tokenizer", help="tokenizer.json to encode with")
    ap.add_argument("--corpus")
    ap.add_argument("--text", action="append", default=[])
    ap.add_argument("--file", action="append", default=[])
    ap.add_argument("--lines", action="append", default=[])
    ap.add_argument("--jsonl", action="append", default=[])
    ap.add_argument("--train-spm", metavar="OUT_DIR")
    ap.add_argument("--style", default="llama2")
    ap.add_argument("--vocab-size", type=int, default=500)
    a = ap.parse_args(argv)
    if a.train_spm:
        n = train_spm(a.train_spm, a.style, a.vocab_size)
        print(os.path.join(a.train_spm, "tokenizer.json"), n, file=sys.stderr)
        return 0
    if not a.out:
        ap.error("give OUT.jsonl (or --train-spm OUT_DIR)")
    texts = gather_texts(a)
    if not texts:
        ap.error("no input texts: use --corpus default, --text, --file, --lines or --jsonl")
    write_expected(a.tokenizer, texts, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
