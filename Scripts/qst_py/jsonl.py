"""Reading JSON Lines files that a running or killed program may still be appending to (run/log.jsonl).

Only complete lines (ending in a newline) are read: a process killed mid-append leaves half a line at
the end, and a reader polling a live log can catch one being written. Such a trailing fragment is
skipped; a malformed complete line is an error naming the file and line.
"""
import json


def complete_lines(text: str):
    """The lines of `text` that end in a newline (a trailing fragment left out)."""
    end = text.rfind("\n")
    return text[: end + 1].splitlines() if end >= 0 else []


def read_jsonl(path: str, kind: str = None):
    """Objects of the complete lines of `path` (those whose "kind" is `kind`, when given)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    out = []
    for n, line in enumerate(complete_lines(text), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not a JSON object ({e})") from None
        if kind is None or obj.get("kind") == kind:
            out.append(obj)
    return out
