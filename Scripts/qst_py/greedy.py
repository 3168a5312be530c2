"""Greedy decoding shared by the NumPy reference models (full re-forward per token: slow, exact)."""

import numpy as np


def greedy(model, prompt_ids, n, stop_at_eos=False):
    """`n` greedy tokens after `prompt_ids` from `model.forward` ([batch, seq] ids -> [batch, seq, vocab])."""
    eos = model.cfg.get("eos_token_id")
    eos = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()
    seq, out = list(prompt_ids), []
    for _ in range(n):
        nxt = int(np.argmax(model.forward(np.array([seq]))[0, -1]))
        out.append(nxt)
        seq.append(nxt)
        if stop_at_eos and nxt in eos:
            break
    return out
