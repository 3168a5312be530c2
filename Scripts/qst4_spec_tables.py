#!/usr/bin/env python3
"""Holds the typed tables of Formats/QST4.md against the bytes of .qst4 files.

The tables are read from the document itself, so a table that disagrees with the files fails here:
  §2 preamble  — offset, size and type of every field (contiguous, 64 bytes in all) decode the preamble;
                 each field's valid values are checked (magic bytes from the table, major version, alignment,
                 data_offset, header range, header_length limit, header CRC-32C, zero reserved bytes);
  §3 header    — the top-level, `quantization`, `files[]` and `layers[]` tables: every required field is
                 present with its JSON type, and every field a file holds is listed (the tables are complete);
  §4 tensors   — the same for each entry of `tensors`, required per dtype, plus the valid values of dtype,
                 block_size, dq_block_size, crc32c and dq_offset_bits.

    qst4_spec_tables.py FILE.qst4 [FILE …] [--spec Formats/QST4.md]

Prints {"files": {name: {"fields_checked": N}}, "mismatches": [...]} and exits 1 on any mismatch,
2 when the document's tables cannot be read. `Scripts/qst4_reader.py --check-golden` runs the same check
on the golden files (`check(paths, crc32c)`).
"""
import json
import os
import re
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEC = os.path.join(ROOT, "Formats", "QST4.md")


class SpecError(Exception):
    """The document's tables are not in the expected shape."""


def _section(text, title_prefix):
    m = re.search(r"^## " + re.escape(title_prefix) + r".*$", text, re.M)
    if not m:
        raise SpecError(f"QST4.md: no section '## {title_prefix}'")
    end = re.search(r"^## ", text[m.end():], re.M)
    return text[m.end(): m.end() + end.start() if end else len(text)]


def _tables(section):
    """Every markdown table of a section as (header cells, rows of cells), in order."""
    tables, lines = [], section.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and re.match(r"^\|(\s*-+\s*\|)+\s*$", lines[i + 1]):
            head = _cells(lines[i])
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            tables.append((head, rows))
        else:
            i += 1
    return tables


def _cells(line):
    # Split on | not inside backticks.
    cells, cur, tick = [], "", False
    for ch in line.strip()[1:-1]:
        if ch == "`":
            tick = not tick
        if ch == "|" and not tick:
            cells.append(cur.strip())
            cur = ""
        else:
            cur += ch
    cells.append(cur.strip())
    return cells


def _table(tables, first_column, needed):
    for head, rows in tables:
        if head and head[0] == first_column and all(n in head for n in needed):
            return [dict(zip(head, r)) for r in rows]
    raise SpecError(f"QST4.md: no table with columns {[first_column] + list(needed)}")


def _table_listing(tables, field):
    """The table whose first column names `field`."""
    for head, rows in tables:
        if head and head[0] == "field" and any(field in _names(r[0]) for r in rows):
            return [dict(zip(head, r)) for r in rows]
    raise SpecError(f"QST4.md: no table of fields listing {field}")


def _names(cell):
    """Field names of a table cell: every backticked identifier before any parenthesis."""
    return re.findall(r"`([a-z_0-9]+)`", cell.split("(")[0])


_STRUCT = {"u8": "B", "u16": "H", "u32": "I", "u64": "Q"}


def preamble_layout(text):
    """[(offset, size, struct code, field, valid-values cell)] from the §2 table."""
    rows = _table(_tables(_section(text, "2. Preamble")), "offset", ("size", "type", "field", "valid values"))
    out, pos = [], 0
    for r in rows:
        off, size = int(r["offset"]), int(r["size"])
        m = re.fullmatch(r"`(u8|u16|u32|u64)(?:\[(\d+)\])?`( LE)?", r["type"])
        if not m:
            raise SpecError(f"QST4.md §2: type {r['type']!r} of {r['field']}")
        base, count = m.group(1), int(m.group(2) or 1)
        width = struct.calcsize("<" + _STRUCT[base])
        if off != pos or width * count != size:
            raise SpecError(f"QST4.md §2: {r['field']} at {off} size {size} does not follow at {pos} or fit {r['type']}")
        if width > 1 and not m.group(3):
            raise SpecError(f"QST4.md §2: {r['field']} has no endianness")
        code = f"{count}s" if base == "u8" else _STRUCT[base]
        out.append((off, size, code, r["field"], r["valid values"]))
        pos += size
    if pos != 64:
        raise SpecError(f"QST4.md §2: the fields cover {pos} bytes, not 64")
    return out


def json_tables(text):
    """{scope: {field: (json type, required)}} from §3 and §4."""
    hdr = _tables(_section(text, "3. Header"))
    tens = _tables(_section(text, "4. Tensors"))
    scopes = {}

    def add(scope, rows, type_col="JSON type", req=lambda r: r.get("required", "yes")):
        fields = {}
        for r in rows:
            for name in _names(r["field"]):
                fields[name] = (r[type_col], req(r))
        scopes[scope] = fields

    add("header", _table(hdr, "field", ("JSON type", "required")))
    add("quantization", _table(hdr, "field", ("JSON type", "values written")),
        req=lambda r: "no" if "optional" in r["JSON type"] else "yes")
    add("files", _table_listing(hdr, "raw_length"))
    add("layers", _table_listing(hdr, "index"))
    add("tensors", _table(tens, "field", ("JSON type", "required")))
    if set(scopes["files"]) != {"name", "offset", "length", "raw_length", "compression", "sha256"}:
        raise SpecError(f"QST4.md §3: files table lists {sorted(scopes['files'])}")
    if set(scopes["layers"]) != {"index", "offset", "length"}:
        raise SpecError(f"QST4.md §3: layers table lists {sorted(scopes['layers'])}")
    return scopes


def _type_ok(value, json_type):
    t = json_type.split(",")[0].strip()
    if t.startswith("integer"):
        ok = isinstance(value, int) and not isinstance(value, bool)
        return ok and (not t.endswith("(u32)") or 0 <= value <= 0xFFFFFFFF)
    if t == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t == "string":
        return isinstance(value, str)
    if t == "bool":
        return isinstance(value, bool)
    if t.startswith("object"):
        return isinstance(value, dict)
    if t.startswith("array of integers"):
        return isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    if t.startswith("array"):
        return isinstance(value, list)
    raise SpecError(f"QST4.md: unknown JSON type {json_type!r}")


def _check_object(obj, fields, where, required_if, problems):
    for name, (json_type, required) in fields.items():
        if name in obj:
            if not _type_ok(obj[name], json_type):
                problems.append(f"{where}.{name}: {obj[name]!r} is not {json_type}")
        elif required_if(required):
            problems.append(f"{where}: required field {name} missing")
    for name in obj:
        if name not in fields:
            problems.append(f"{where}: field {name} is not in the spec's table")
    return len(obj)


def check_file(path, text, crc32c):
    """(fields checked, problems) for one container."""
    problems = []
    data = open(path, "rb").read()
    layout = preamble_layout(text)
    if len(data) < 64:
        return 0, [f"{path}: shorter than the preamble"]
    pre = {}
    for off, size, code, field, _valid in layout:
        (pre[field],) = struct.unpack_from("<" + code, data, off)
    valid = {field: v for _o, _s, _c, field, v in layout}
    magic = bytes(int(h, 16) for h in re.search(r"`((?:[0-9A-F]{2} ?){8})`", valid["magic"]).group(1).split())
    if pre["magic"] != magic:
        problems.append(f"magic {pre['magic']!r} != the table's {magic!r}")
    if str(pre["major_version"]) not in re.findall(r"`(\d+)`", valid["major_version"]):
        problems.append(f"major_version {pre['major_version']} not in the table's {valid['major_version']}")
    written = [int(v) for v in re.findall(r"`(\d+)`", valid["minor_version"])]
    if pre["minor_version"] not in written:
        problems.append(f"minor_version {pre['minor_version']} is not one the table says writers write {written}")
    a = pre["alignment"]
    if a < 4096 or a & (a - 1):
        problems.append(f"alignment {a}")
    if pre["data_offset"] % a or pre["data_offset"] < 64 or pre["data_offset"] > pre["header_offset"]:
        problems.append(f"data_offset {pre['data_offset']}")
    if pre["header_offset"] + pre["header_length"] != len(data):
        problems.append(f"header_offset + header_length = {pre['header_offset'] + pre['header_length']} != size {len(data)}")
    if pre["header_length"] > 104857600:
        problems.append(f"header_length {pre['header_length']}")
    raw = data[pre["header_offset"]: pre["header_offset"] + pre["header_length"]]
    if crc32c(raw) != pre["header_crc32c"]:
        problems.append("header_crc32c does not match the header bytes")
    if any(pre["reserved"]):
        problems.append("reserved bytes are not zero")
    count = len(layout)

    scopes = json_tables(text)
    header = json.loads(raw.decode("utf-8"))
    yes = lambda req: req == "yes"  # noqa: E731
    count += _check_object(header, scopes["header"], "header", lambda r: r.startswith("yes"), problems)
    if isinstance(header.get("quantization"), dict):
        count += _check_object(header["quantization"], scopes["quantization"], "quantization", yes, problems)
    for i, f in enumerate(header.get("files", [])):
        count += _check_object(f, scopes["files"], f"files[{i}]", lambda r: True, problems)
    for i, lr in enumerate(header.get("layers", [])):
        count += _check_object(lr, scopes["layers"], f"layers[{i}]", lambda r: True, problems)
    for i, t in enumerate(header.get("tensors", [])):
        nf4, dq = t.get("dtype") == "NF4", t.get("double_quant") is True
        need = lambda r: r == "yes" or (r == "NF4" and nf4) or (r == "NF4 with double quantization" and dq)  # noqa: E731
        where = f"tensors[{i}] {t.get('name')}"
        count += _check_object(t, scopes["tensors"], where, need, problems)
        if t.get("dtype") not in ("NF4", "BF16", "F16", "F32"):
            problems.append(f"{where}: dtype {t.get('dtype')!r}")
        if nf4:
            b = t.get("block_size", 0)
            if not (32 <= b <= 4096 and b & (b - 1) == 0):
                problems.append(f"{where}: block_size {b}")
            if dq and not 1 <= t.get("dq_block_size", 0) <= 1 << 20:
                problems.append(f"{where}: dq_block_size {t.get('dq_block_size')}")
    return count, problems


def check(paths, crc32c, spec=SPEC):
    """{"files": {basename: {"fields_checked": N}}, "mismatches": [{"file", "what"}]}."""
    with open(spec, encoding="utf-8") as f:
        text = f.read()
    report = {"files": {}, "mismatches": []}
    for p in paths:
        n, problems = check_file(p, text, crc32c)
        report["files"][os.path.basename(p)] = {"fields_checked": n}
        report["mismatches"] += [{"file": os.path.basename(p), "what": "spec table: " + q} for q in problems]
    return report


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+")
    ap.add_argument("--spec", default=SPEC)
    args = ap.parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from qst4_reader import crc32c
    try:
        report = check(args.files, crc32c, args.spec)
    except SpecError as e:
        print(str(e), file=sys.stderr)
        return 2
    print(json.dumps(report, indent=1))
    return 1 if report["mismatches"] else 0


if __name__ == "__main__":
    sys.exit(main())
