#!/usr/bin/env python3
"""Independent NumPy reader of `.qst4` containers, written from Formats/QST4.md alone.

It shares no code with the Swift reader, so tests can hold one against the other.

Python API (import with Scripts/ on sys.path; the reader itself is Scripts/qst_py/qst4_container.py,
CRC-32C Scripts/qst_py/crc32c.py):
  r = QST4(path)                 validates preamble, header CRC-32C and every entry (QST4.md §2, §6)
  r.header                       the JSON header (dict)
  r.tensor_names()               names in header order
  r.entry(name)                  the tensor's header entry (dict)
  r.raw_parts(name)              {part: ndarray}: data (<f4 | <u2 | <f2) or codes u1 +
                                 (absmax f4 | absmax_codes u1 + absmax2 f4); read-only views
  r.decoded_absmax(name)         float32 per-block absmax as decoding uses it
  r.tensor(name)                 float32 ndarray with the entry's shape
  r.file(name)                   embedded file, decompressed, length and sha256 checked (bytes)
  r.config()                     the embedded config.json (dict)
  r.verify()                     list of problems: tensor crc32c, file sha256, non-zero gaps
  crc32c(data, crc=0) -> int     CRC-32C (Castagnoli), chainable: crc32c(b, crc32c(a)) == crc32c(a+b)

CLI:
  qst4_reader.py FILE                      summary of the header
  qst4_reader.py FILE --list               one line per tensor
  qst4_reader.py FILE --tensor NAME --out x.npy
  qst4_reader.py FILE --extract-file NAME --out config.json
  qst4_reader.py FILE --dump-safetensors OUT.safetensors   every tensor as F32 (for reference_forward.py
                                                            --override-safetensors)
  qst4_reader.py FILE --verify             checksums and gaps; exit 1 on any problem
  qst4_reader.py --check-golden [DIR]      decode DIR/tiny.qst4 and DIR/tiny-nodq.qst4 (default
                                           Formats/golden), compare bitwise with tiny.expected.json,
                                           verify checksums, and hold the typed tables of QST4.md §2-§4
                                           against their bytes (Scripts/qst4_spec_tables.py); JSON on
                                           stdout, exit 1 on mismatch
Errors: exit 2 with a one-line message naming the file and the field.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qst_py.venv import ensure_venv  # noqa: E402

ensure_venv(("numpy",))

import json  # noqa: E402

import numpy as np  # noqa: E402

from qst_py.crc32c import crc32c  # noqa: E402
from qst_py.qst4_container import QST4, QST4Error  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def check_golden(folder):
    with open(os.path.join(folder, "tiny.expected.json")) as f:
        expected = json.load(f)
    report = {"files": {}, "mismatches": []}
    for fname, tensors in expected.items():
        path = os.path.join(folder, fname)
        try:
            r = QST4(path)
            problems = r.verify()
            r.config()
        except QST4Error as e:
            report["mismatches"].append({"file": fname, "what": str(e)})
            continue
        for prob in problems:
            report["mismatches"].append({"file": fname, "what": prob})
        if set(r.tensor_names()) != set(tensors):
            report["mismatches"].append({"file": fname, "what": "tensor names differ",
                                         "container": sorted(r.tensor_names()), "expected": sorted(tensors)})
        checked = 0
        for name, exp in tensors.items():
            if name not in r.tensor_names():
                continue
            got = r.tensor(name)
            checked += 1
            if list(got.shape) != exp["shape"]:
                report["mismatches"].append({"file": fname, "tensor": name, "what": "shape",
                                             "got": list(got.shape), "expected": exp["shape"]})
                continue
            bits = got.reshape(-1).view(np.uint32)
            want = np.array(exp["bits"], dtype=np.uint32)
            if bits.size != want.size or np.any(bits != want):
                first = int(np.flatnonzero(bits != want)[0]) if bits.size == want.size else -1
                report["mismatches"].append({"file": fname, "tensor": name, "what": "bits", "first_index": first})
        report["files"][fname] = {"tensors_checked": checked,
                                  "nf4": sum(r.entry(n)["dtype"] == "NF4" for n in r.tensor_names())}
    # The typed tables of QST4.md §2-§4, read from the document, against the same files' bytes.
    import qst4_spec_tables
    try:
        spec = qst4_spec_tables.check([os.path.join(folder, f) for f in expected], crc32c)
        report["spec_tables"] = spec["files"]
        report["mismatches"] += spec["mismatches"]
    except qst4_spec_tables.SpecError as e:
        report["mismatches"].append({"what": f"spec table: {e}"})
    return report


def _summary(r):
    h = r.header
    lines = [f"{r.path}: qst4 {r.version[0]}.{r.version[1]}, alignment {r.alignment}, "
             f"data {r.data_offset}..{r.header_offset}, created by {h.get('created_by')}",
             f"  quantization {json.dumps(h.get('quantization'))}",
             f"  {len(r.tensor_names())} tensors, {len(h.get('layers', []))} layers, files: "
             + ", ".join(f"{n} ({f['raw_length']} B)" for n, f in r._files.items())]
    counts = {}
    for n in r.tensor_names():
        counts[r.entry(n)["dtype"]] = counts.get(r.entry(n)["dtype"], 0) + 1
    lines.append("  dtypes " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return "\n".join(lines)


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file", nargs="?", help=".qst4 container (or, with --check-golden, the golden folder)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--tensor")
    ap.add_argument("--extract-file")
    ap.add_argument("--out")
    ap.add_argument("--dump-safetensors")
    ap.add_argument("--verify", action="store_true")
    ap.add_argument("--check-golden", action="store_true")
    args = ap.parse_args(argv)

    if args.check_golden:
        folder = args.file or os.path.join(ROOT, "Formats", "golden")
        report = check_golden(folder)
        print(json.dumps(report, indent=1))
        return 1 if report["mismatches"] or not report["files"] else 0
    if not args.file:
        ap.error("FILE is required")
    try:
        r = QST4(args.file)
        if args.list:
            for n in r.tensor_names():
                e = r.entry(n)
                extra = ""
                if e["dtype"] == "NF4":
                    extra = f" block {e['block_size']}" + (f" dq {e['dq_block_size']}" if e["double_quant"] else "")
                print(f"{n}\t{e['dtype']}\t{e['shape']}\tlayer {e['layer']}{extra}")
        if args.tensor:
            x = r.tensor(args.tensor)
            if args.out:
                np.save(args.out, x)
            else:
                print(f"{args.tensor}: shape {list(x.shape)} min {x.min() if x.size else 0} "
                      f"max {x.max() if x.size else 0} mean {x.mean(dtype=np.float64) if x.size else 0}")
        if args.extract_file:
            data = r.file(args.extract_file)
            if args.out:
                with open(args.out, "wb") as f:
                    f.write(data)
            else:
                sys.stdout.buffer.write(data)
        if args.dump_safetensors:
            from qst_py import safetensors_np as st
            st.save(args.dump_safetensors, {n: r.tensor(n) for n in r.tensor_names()},
                    {"format": "pt", "source": os.path.basename(args.file)})
        if args.verify:
            problems = r.verify()
            for prob in problems:
                print(f"{args.file}: {prob}", file=sys.stderr)
            print(f"{args.file}: verify {'FAILED' if problems else 'ok'}")
            if problems:
                return 1
        if not (args.list or args.tensor or args.extract_file or args.dump_safetensors or args.verify):
            print(_summary(r))
    except (QST4Error, KeyError, OSError) as e:
        print(str(e).strip("'\""), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())