#!/usr/bin/env python3
"""Checks a running qst-serve with the official `openai` client (and raw HTTP for malformed requests).

    serve_client_check.py BASE_URL EXPECTED.json [--mode full|busy|auth]

EXPECTED.json: {"prompt": str, "chat_prompt": str, "max_tokens": int, "models": {name: {"completion": text,
"chat": text}}}, the greedy answers `qst-generate` gave for the same prompts (and `--side` for side networks).
Prints one line per check; exits 1 on the first failure with what differed.
"""
import json
import socket
import sys
import threading
import time
import urllib.error
import urllib.request

import openai


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)
    print("ok: " + msg.split(":")[0])


def raw(base, method, path, body=None, headers=None):
    req = urllib.request.Request(base.rsplit("/v1", 1)[0] + path, data=body, method=method,
                                 headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def full(base, exp):
    client = openai.OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=120)
    names = [m.id for m in client.models.list().data]
    check(set(exp["models"]) <= set(names), f"models: listed {names}")
    n = exp["max_tokens"]
    for name, want in exp["models"].items():
        c = client.completions.create(model=name, prompt=exp["prompt"], max_tokens=n, temperature=0)
        check(c.choices[0].text == want["completion"],
              f"completion {name}: got {c.choices[0].text!r}, qst-generate gave {want['completion']!r}")
        check(c.usage.prompt_tokens > 0 and c.usage.completion_tokens <= n
              and c.usage.total_tokens == c.usage.prompt_tokens + c.usage.completion_tokens, f"usage {name}: {c.usage}")
        r = client.chat.completions.create(model=name, messages=[{"role": "user", "content": exp["chat_prompt"]}],
                                           max_tokens=n, temperature=0)
        check(r.choices[0].message.content == want["chat"],
              f"chat {name}: got {r.choices[0].message.content!r}, qst-generate gave {want['chat']!r}")
        pieces, finish, usage = [], None, None
        for ch in client.chat.completions.create(model=name, messages=[{"role": "user", "content": exp["chat_prompt"]}],
                                                 max_tokens=n, temperature=0, stream=True,
                                                 stream_options={"include_usage": True}):
            if ch.usage:
                usage = ch.usage
            for choice in ch.choices:
                pieces.append(choice.delta.content or "")
                finish = choice.finish_reason or finish
        check("".join(pieces) == want["chat"], f"stream {name}: got {''.join(pieces)!r}")
        check(finish in ("stop", "length") and usage is not None, f"stream end {name}: finish {finish}, usage {usage}")
        text = "".join(ch.choices[0].text for ch in client.completions.create(
            model=name, prompt=exp["prompt"], max_tokens=n, temperature=0, stream=True) if ch.choices)
        check(text == want["completion"], f"completion stream {name}: got {text!r}")
    # Concurrent requests over all models at once: every answer well-formed and of the right model.
    results = {}

    def one(name, k):
        c = client.completions.create(model=name, prompt=exp["prompt"], max_tokens=n, temperature=0)
        results[(name, k)] = (c.model, c.choices[0].text)
    threads = [threading.Thread(target=one, args=(name, k)) for k in range(3) for name in exp["models"]]
    [t.start() for t in threads]
    [t.join() for t in threads]
    check(len(results) == len(threads) and all(m == name for (name, _), (m, _) in results.items()),
          f"concurrent: {len(results)} of {len(threads)} answered")
    same = sum(text == exp["models"][name]["completion"] for (name, _), (_, text) in results.items())
    print(f"info: concurrent answers equal to the sequential ones: {same} of {len(results)}")
    # Stop strings and sampling parameters.
    want = exp["models"][names[0]]["completion"]
    if len(want) > 2:
        stop = want[1:3]
        c = client.completions.create(model=names[0], prompt=exp["prompt"], max_tokens=n, temperature=0, stop=[stop])
        check(c.choices[0].text == want[:want.index(stop)] and c.choices[0].finish_reason == "stop",
              f"stop string {stop!r}: got {c.choices[0].text!r}")
    a = client.completions.create(model=names[0], prompt=exp["prompt"], max_tokens=n, temperature=1.0, top_p=0.9, seed=7)
    b = client.completions.create(model=names[0], prompt=exp["prompt"], max_tokens=n, temperature=1.0, top_p=0.9, seed=7)
    check(a.choices[0].text == b.choices[0].text, "seed: same seed, same sample")
    # Errors: an OpenAI-shaped JSON error with a 4xx, and the server keeps serving.
    for body, status, what in [(b"{not json", 400, "malformed JSON"),
                               (b'{"model": "nope", "prompt": "x"}', 404, "unknown model"),
                               (json.dumps({"model": names[0], "prompt": "x", "temperature": -1}).encode(), 400, "bad temperature"),
                               (json.dumps({"model": names[0], "prompt": "x", "max_tokens": 0}).encode(), 400, "bad max_tokens"),
                               (json.dumps({"model": names[0], "prompt": "x " * 20000}).encode(), 400, "prompt too long"),
                               (json.dumps({"model": names[0]}).encode(), 400, "missing prompt")]:
        code, doc = raw(base, "POST", "/v1/completions", body)
        check(code == status and "message" in doc.get("error", {}), f"{what}: {code} {doc}")
    try:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
        fail("unknown model: no error")
    except openai.NotFoundError:
        print("ok: openai NotFoundError")
    code, _ = raw(base, "GET", "/v1/nothing")
    check(code == 404, "unknown path: 404")
    # Admin: add a side network under a new name, use it, remove it.
    if exp.get("admin_side"):
        code, doc = raw(base, "POST", "/admin/sides", json.dumps({"name": "added", "path": exp["admin_side"]}).encode())
        check(code == 200, f"admin add: {code} {doc}")
        c = client.completions.create(model="added", prompt=exp["prompt"], max_tokens=n, temperature=0)
        check(c.choices[0].text == exp["admin_expected"], f"added side: got {c.choices[0].text!r}")
        code, _ = raw(base, "DELETE", "/admin/sides/added")
        check(code == 200 and "added" not in [m.id for m in client.models.list().data], "admin remove")
        code, doc = raw(base, "POST", "/admin/sides", json.dumps({"name": "bad", "path": "/nonexistent"}).encode())
        check(code == 400 and "error" in doc, f"admin add of a missing folder: {code}")
    # Disconnect mid-stream: the slot is freed (health shows nothing active) and the server still answers.
    # ignore_eos: a stream that met end-of-sequence on its own would end before the hang-up and free nothing.
    host, port = base.split("//")[1].split("/")[0].split(":")
    s = socket.create_connection((host, int(port)))
    body = json.dumps({"model": names[0], "prompt": exp["prompt"], "max_tokens": 2000, "stream": True,
                       "ignore_eos": True}).encode()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: "
              + str(len(body)).encode() + b"\r\n\r\n" + body)
    got = b""
    while got.count(b"data:") < 3:
        got += s.recv(4096)
    s.close()
    for _ in range(100):
        _, h = raw(base, "GET", "/health")
        if h["active"] == 0:
            break
        time.sleep(0.1)
    check(h["active"] == 0 and h["cancelled"] >= 1, f"disconnect frees the slot: {h}")
    c = client.completions.create(model=names[0], prompt=exp["prompt"], max_tokens=n, temperature=0)
    check(c.choices[0].text == want, "serving after the disconnect")


def busy(base, exp):
    """Server started with --max-batch 1 --max-queue 1: extra concurrent requests get 429."""
    codes = []

    def one():
        codes.append(raw(base, "POST", "/v1/completions",
                         json.dumps({"model": exp["base"], "prompt": exp["prompt"], "max_tokens": 200,
                                     "temperature": 0}).encode())[0])
    threads = [threading.Thread(target=one) for _ in range(6)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    # Which ones get through depends on when the engine takes a request off the queue (1 or 2 of them).
    check(codes.count(429) >= 1 and codes.count(200) >= 1 and set(codes) <= {200, 429}, f"queue bound: {codes}")
    one()
    check(codes[-1] == 200, f"serving after the burst: {codes[-1]}")


def inflight(base, exp):
    """Streams one long completion; says "first chunk" as soon as one arrives (the test then sends the
    server SIGTERM), and checks the stream still runs to its end."""
    client = openai.OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=120)
    pieces, finish, usage = 0, None, None
    for ch in client.completions.create(model=exp["base"], prompt=exp["prompt"], max_tokens=exp["max_tokens"],
                                        temperature=0, stream=True, stream_options={"include_usage": True},
                                        extra_body={"ignore_eos": True}):
        if pieces == 0:
            print("first chunk", flush=True)
        pieces += 1
        usage = ch.usage or usage
        for choice in ch.choices:
            finish = choice.finish_reason or finish
    check(finish == "length" and usage is not None and usage.completion_tokens == exp["max_tokens"],
          f"in-flight stream finished: {pieces} chunks, {finish}, {usage}")


def auth(base, exp):
    code, doc = raw(base, "GET", "/v1/models")
    check(code == 401 and "error" in doc, f"no key: {code}")
    client = openai.OpenAI(base_url=base, api_key=exp["api_key"], max_retries=0)
    check(exp["base"] in [m.id for m in client.models.list().data], "with the key")
    try:
        openai.OpenAI(base_url=base, api_key="wrong", max_retries=0).models.list()
        fail("wrong key accepted")
    except openai.AuthenticationError:
        print("ok: wrong key rejected")


if __name__ == "__main__":
    base_url, expected = sys.argv[1], json.load(open(sys.argv[2]))
    mode = sys.argv[4] if len(sys.argv) > 4 and sys.argv[3] == "--mode" else "full"
    {"full": full, "busy": busy, "auth": auth, "inflight": inflight}[mode](base_url, expected)
    print("all checks passed")
