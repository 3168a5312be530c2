#!/usr/bin/env python3
"""Extra reference cases for QST's Swift tokenizer tests (the ids themselves come from
Scripts/tokenizer_expected.py; this script builds tokenizers to run it on and renders chat templates).

  tokenizer_cases.py build OUT_DIR
      Trains a small byte-level BPE on tinyshakespeare.txt with the HF `tokenizers` library and
      writes variants as OUT_DIR/<name>/tokenizer.json (+ tokenizer_config.json):
        llama3     Split(Llama 3 regex, Isolated) + ByteLevel(use_regex=false), ignore_merges,
                   <|begin_of_text|> template post-processor, Llama 3 header tokens
        qwen2      NFC normalizer, Split(Qwen2 regex), ByteLevel, ChatML added tokens
        gpt2flags  ByteLevel(add_prefix_space, GPT-2 regex) + Digits, NFKC+Lowercase normalizer,
                   added tokens with lstrip / rstrip / single_word / normalized flags
        split-<behavior>  Split(r"\s+|[,.;!?]", <behavior>) for each delimiter behavior (and an
                   inverted Removed), then ByteLevel(use_regex=false)
      Prints the variant names, one per line.

  tokenizer_cases.py decode --tokenizer TOKENIZER_JSON OUT.jsonl
      Decoding cases: seeded random id sequences (including special tokens, and byte tokens that
      split UTF-8 characters) with decode(ids, skip_special_tokens=False/True).
      Lines: {"ids": [...], "decoded": str, "decoded_skip": str}

  tokenizer_cases.py fuzz OUT.jsonl [--count 2000] [--seed 7]
      Seeded random texts built from pieces that stress the split patterns (apostrophes and case,
      every kind of Unicode whitespace, combining marks, digits of several scripts, emoji
      sequences, control characters, special-token strings). Lines: {"text": str}

  tokenizer_cases.py chat OUT.jsonl [--template-file TOKENIZER_CONFIG_JSON]
      Renders conversations with jinja2 through the reference chat templates of ChatML (SmolLM2),
      Llama 2, Llama 3 and Mistral (plus the chat_template of the given tokenizer_config.json).
      Lines: {"name", "template", "bos_token", "eos_token", "messages", "add_generation_prompt", "rendered"}
"""
import json
import os
import random
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qst_py.venv import ensure_venv  # noqa: E402

ensure_venv(("tokenizers",))

DATA = os.environ.get("QST_DATA") or "/work/shared/data"

LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")

# Public chat templates of the model families (as published in their tokenizer_config.json files).
TEMPLATES = {
    "chatml": "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
    "llama2": "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}",
    "llama3": "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}",
    "mistral": "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}",
    "qwen2": "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
}
TOKENS = {"chatml": ("<|im_start|>", "<|im_end|>"), "qwen2": ("", "<|im_end|>"), "llama2": ("<s>", "</s>"),
          "llama3": ("<|begin_of_text|>", "<|end_of_text|>"), "mistral": ("<s>", "</s>")}

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "What is 2+2?"}],
    [{"role": "user", "content": "  Tell me a joke.\n"}, {"role": "assistant", "content": " Why did the chicken cross the road? "},
     {"role": "user", "content": "Another one, with ünïcödé 😀"}],
    [{"role": "system", "content": "Be kind.\nAlways."}, {"role": "user", "content": "Hi"},
     {"role": "assistant", "content": "Hello! How can I help?"}, {"role": "user", "content": "Line one\nline two"}],
]


def train_byte_level():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    with open(os.path.join(DATA, "text/tinyshakespeare.txt"), encoding="utf-8") as f:
        text = f.read()
    chunks = [text[i:i + 2000] for i in range(0, len(text), 2000)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1200, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(chunks, trainer)
    return tok


def variant(base, name, out_dir, setup):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_str(base.to_str())
    config = setup(tok) or {}
    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)
    tok.save(os.path.join(d, "tokenizer.json"))
    with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, ensure_ascii=False)
    print(name)


def build(out_dir):
    from tokenizers import AddedToken, Regex, normalizers, pre_tokenizers, processors
    base = train_byte_level()

    def llama3(tok):
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        tok.model.ignore_merges = True
        names = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
        tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in names])
        bos = tok.token_to_id("<|begin_of_text|>")
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                                          special_tokens=[("<|begin_of_text|>", bos)])])
        return {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "chat_template": TEMPLATES["llama3"]}

    def qwen2(tok):
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                for t in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]])
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        return {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "chat_template": TEMPLATES["qwen2"]}

    def gpt2flags(tok):
        tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=False),
            pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)])
        tok.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True, normalized=False),
                                AddedToken("[SEP]", rstrip=True, special=True, normalized=False),
                                AddedToken("<|endoftext|>", special=True, normalized=False)])
        tok.add_tokens([AddedToken("word", single_word=True, normalized=True),
                        AddedToken("HeLLo", normalized=True),
                        AddedToken(" spaced", normalized=False)])
        tok.post_processor = processors.TemplateProcessing(single="<|endoftext|> $A [SEP]", pair="$A [SEP] $B",
                                                           special_tokens=[("<|endoftext|>", tok.token_to_id("<|endoftext|>")),
                                                                           ("[SEP]", tok.token_to_id("[SEP]"))])
        return {"eos_token": "<|endoftext|>"}

    variant(base, "llama3", out_dir, llama3)
    variant(base, "qwen2", out_dir, qwen2)
    variant(base, "gpt2flags", out_dir, gpt2flags)
    for behavior, invert in [("removed", False), ("isolated", False), ("merged_with_previous", False),
                             ("merged_with_next", False), ("contiguous", False), ("removed", True)]:
        def split(tok, behavior=behavior, invert=invert):
            tok.pre_tokenizer = pre_tokenizers.Sequence([
                pre_tokenizers.Split(Regex(r"\s+|[,.;!?]"), behavior=behavior, invert=invert),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        variant(base, f"split-{behavior}{'-invert' if invert else ''}", out_dir, split)


def decode_cases(tokenizer_path, out):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(tokenizer_path)
    n = tok.get_vocab_size(with_added_tokens=True)
    added = sorted(tok.get_added_tokens_decoder().keys())
    rng = random.Random(1234)
    with open(out, "w", encoding="utf-8") as f:
        for i in range(300):
            length = rng.randint(1, 12)
            ids = [rng.randrange(n) for _ in range(length)]
            if added and i % 3 == 0:
                ids.insert(rng.randrange(len(ids) + 1), rng.choice(added))
            rec = {"ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False),
                   "decoded_skip": tok.decode(ids, skip_special_tokens=True)}
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")


FUZZ_ALPHABET = (list("aAbZz09'sStTlLdDmMrRvVeE .,;:!?-_()[]{}<>|/\\\"#$%&*+=@^`~") +
                 [" ", "  ", "\t", "\n", "\r", "\r\n", "\x0b", "\x0c", "\x85", "\xa0", "\u1680", "\u2000", "\u2028",
                  "\u2029", "\u202f", "\u3000", "\u200b", "\ufeff", "\u0301", "\u0308", "\u20dd", "é", "ß", "ſ", "K",
                  "İ", "Ω", "Ж", "ж", "ا", "ב", "अ", "ก", "中", "文", "ア", "한", "Ⅻ", "½", "²", "٣", "𝟘", "🙂", "👍🏽",
                  "🇫🇷", "\U0001f9d1\u200d\U0001f4bb", "€", "©", "…", "—", "’", "“", "\x00", "\x1f", "\x7f",
                  "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<s>", "</s>", "'ll", "'S", "'Re", "123", "4567"])


def fuzz_cases(out, count, seed):
    rng = random.Random(seed)
    with open(out, "w", encoding="utf-8") as f:
        for _ in range(count):
            text = "".join(rng.choice(FUZZ_ALPHABET) for _ in range(rng.randint(1, 40)))
            f.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")


def ensure_jinja2():
    try:
        import jinja2  # noqa: F401
    except ImportError:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "jinja2"],
                              stdout=subprocess.DEVNULL)


def chat_cases(out, template_file=None):
    ensure_jinja2()
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)  # as transformers renders
    env.globals["raise_exception"] = raise_exception
    templates = dict(TEMPLATES)
    if template_file:
        with open(template_file, encoding="utf-8") as f:
            cfg = json.load(f)
        templates["config"] = cfg["chat_template"]
        TOKENS["config"] = (cfg.get("bos_token") or "", cfg.get("eos_token") or "")
    with open(out, "w", encoding="utf-8") as f:
        for name, template in templates.items():
            bos, eos = TOKENS[name]
            compiled = env.from_string(template)
            for messages in CONVERSATIONS:
                if name == "mistral" and messages[0]["role"] == "system":
                    continue  # the Mistral v0.1 template rejects system messages
                for gen in (False, True):
                    rendered = compiled.render(messages=messages, add_generation_prompt=gen,
                                               bos_token=bos, eos_token=eos)
                    f.write(json.dumps({"name": name, "template": template, "bos_token": bos, "eos_token": eos,
                                        "messages": messages, "add_generation_prompt": gen,
                                        "rendered": rendered}, ensure_ascii=False) + "\n")


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("out_dir")
    d = sub.add_parser("decode")
    d.add_argument("--tokenizer", required=True)
    d.add_argument("out")
    z = sub.add_parser("fuzz")
    z.add_argument("out")
    z.add_argument("--count", type=int, default=2000)
    z.add_argument("--seed", type=int, default=7)
    c = sub.add_parser("chat")
    c.add_argument("out")
    c.add_argument("--template-file")
    a = ap.parse_args(argv)
    if a.cmd == "build":
        build(a.out_dir)
    elif a.cmd == "fuzz":
        fuzz_cases(a.out, a.count, a.seed)
    elif a.cmd == "decode":
        decode_cases(a.tokenizer, a.out)
    else:
        chat_cases(a.out, a.template_file)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
