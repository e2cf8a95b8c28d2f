#!/usr/bin/env python3
"""Input preparation for benches/peers/run.sh (Python standard library only).

    prep.py events OUT.jsonl [--limit N] [--times T] [--startup STARTUP.jsonl] EVENTS_DIR
        Concatenate EVENTS_DIR/**/*.jsonl.gz (sorted by path, as `find | sort`; the order
        tests/reference.rs uses), keep the first N events, T times over (default once: a
        longer stream, so that start-up no longer dominates the fastest engines' time),
        and number them: `"_line":N` is inserted as the first member of each JSON object
        line (the rest of the line is kept byte for byte), so every engine sees the same
        events and each engine's detections can be tied back to an input line. Blank lines
        are dropped. With --startup, the first event that has an `@timestamp` is also written
        alone to STARTUP.jsonl (chainsaw skips events without one; the first event if none
        has one), for start-up timing.

    prep.py any-profile SYSMON.yaml RULES_DIR OUT.yaml
        A Tocsin profile named `any` in which every logsource value (those of SYSMON.yaml and
        every category/product/service used by the rules under RULES_DIR) maps to `[]`, the
        profile format's "no condition", and without field fallbacks. Under it Tocsin tests
        every rule's detection block against every event, with Sigma field names read
        verbatim: the question rsigma without a pipeline (and hayabusa) answers.

    prep.py halves EVENTS.jsonl FIRST.jsonl SECOND.jsonl
        Split EVENTS.jsonl into its first half of lines (rounded up) and the rest, byte for
        byte: the inputs of the two workers of `tocsin-x2` and `rsigma-sysmon-x2`.

    prep.py merge-halves FIRST.jsonl OUT.jsonl DETECTIONS_A DETECTIONS_B
        Tocsin detections of the two halves as one file: those of the second half with
        `source.position` moved on by the first half's lines (FIRST.jsonl), so that they
        name lines of the whole input, as a single `tocsin run`'s do (`source.name` still
        names the half, and the second half's lines are written again by `json`).
"""

from __future__ import annotations

import gzip
import json
import re
import sys
from pathlib import Path


def input_lines(events_dir: Path):
    files = sorted(events_dir.rglob("*.jsonl.gz"))
    if not files:
        raise SystemExit(f"prep.py: no *.jsonl.gz under {events_dir}")
    for path in files:
        with gzip.open(path, "rb") as f:
            yield from f


def repeated_lines(events_dir: Path, limit: int | None, times: int):
    """The first `limit` non-blank input lines (all when None), `times` times over."""
    for _ in range(times):
        kept = 0
        for raw in input_lines(events_dir):
            if limit is not None and kept >= limit:
                break
            if raw.strip():
                kept += 1
                yield raw


def number_events(
    events_dir: Path, out: Path, limit: int | None, startup: Path | None, times: int = 1
) -> int:
    n = 0
    first_timed = None
    tmp = out.with_name(out.name + ".part")
    with open(tmp, "wb") as f:
        for raw in repeated_lines(events_dir, limit, times):
            line = raw.strip()
            if not line.startswith(b"{"):
                raise SystemExit(f"prep.py: input line {n + 1} is not a JSON object")
            n += 1
            head = b'{"_line":%d' % n
            rest = line[1:].lstrip()
            numbered = head + (b"}" if rest == b"}" else b"," + rest)
            f.write(numbered + b"\n")
            if n == 1:
                first = numbered
            if first_timed is None and b'"@timestamp"' in line:
                first_timed = numbered
    tmp.replace(out)
    if startup is not None and n:
        startup.write_bytes((first_timed or first) + b"\n")
    return n


# --------------------------------------------------------------------------------------------
# The `any` profile
# --------------------------------------------------------------------------------------------

DIMENSIONS = ("product", "service", "category")
KEY = re.compile(r"^(\s*)([^\s:#][^:#]*?)\s*:(.*)$")


def profile_logsource_values(text: str) -> dict[str, set[str]]:
    """Logsource values named in a profile's `logsources:` table (indentation-based read)."""
    values = {d: set() for d in DIMENSIONS}
    in_table, dim, dim_indent = False, None, None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = KEY.match(line)
        indent = len(line) - len(line.lstrip())
        if indent == 0:
            in_table = bool(m and m.group(2) == "logsources")
            dim = None
            continue
        if not in_table or not m or line.lstrip().startswith("-"):
            continue
        if m.group(2) in DIMENSIONS and (dim_indent is None or indent <= dim_indent):
            dim, dim_indent = m.group(2), indent
        elif dim is not None and indent > dim_indent:
            values[dim].add(m.group(2).strip("'\""))
    return values


def top_level_sections(text: str) -> dict[str, str]:
    """Top-level key -> its text (the key line and the indented lines under it)."""
    sections, current = {}, None
    for line in text.splitlines(keepends=True):
        if line.strip() and not line[0].isspace() and not line.startswith("#"):
            m = KEY.match(line)
            current = m.group(2) if m else None
            if current:
                sections[current] = ""
        if current:
            sections[current] += line
    return sections


def rule_logsource_values(rules_dir: Path) -> dict[str, set[str]]:
    """category/product/service values in the `logsource:` blocks of the rule files."""
    values = {d: set() for d in DIMENSIONS}
    for path in sorted(rules_dir.rglob("*.yml")) + sorted(rules_dir.rglob("*.yaml")):
        in_block = False
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("logsource:"):
                in_block = True
                continue
            if in_block:
                if line.strip() and not line[0].isspace():
                    in_block = False
                    continue
                m = KEY.match(line)
                if m and m.group(2) in DIMENSIONS:
                    v = m.group(3).split("#", 1)[0].strip().strip("'\"")
                    if v:
                        values[m.group(2)].add(v.lower())
    return values


def yaml_key(s: str) -> str:
    return s if re.fullmatch(r"[A-Za-z0-9_.-]+", s) else "'" + s.replace("'", "''") + "'"


def any_profile(sysmon: Path, rules_dir: Path, out: Path) -> None:
    text = sysmon.read_text(encoding="utf-8")
    values = profile_logsource_values(text)
    for dim, vs in rule_logsource_values(rules_dir).items():
        values[dim] |= vs
    sections = top_level_sections(text)
    parts = [
        f"# Generated by benches/peers/prep.py from {sysmon.name} and the logsources of {rules_dir}.\n"
        "# Every logsource value maps to [] (no condition) and there are no field fallbacks:\n"
        "# each rule's detection is tested against every event, field names verbatim.\n",
        "name: any\n",
        "description: no logsource conditions, no field mapping (peer comparison only)\n",
    ]
    for key in ("context", "indicators", "entities"):
        if key in sections:
            parts.append(sections[key] if sections[key].endswith("\n") else sections[key] + "\n")
    parts.append("logsources:\n")
    for dim in DIMENSIONS:
        parts.append(f"  {dim}:\n")
        for v in sorted(values[dim]):
            parts.append(f"    {yaml_key(v)}: []\n")
    out.write_text("".join(parts), encoding="utf-8")
    counts = ", ".join(f"{len(values[d])} {d}" for d in DIMENSIONS)
    print(f"prep.py: wrote {out} ({counts} values, all unconditioned)", file=sys.stderr)


def halves(events: Path, first: Path, second: Path) -> None:
    with open(events, "rb") as f:
        lines = f.readlines()
    cut = (len(lines) + 1) // 2
    # Written aside, then renamed: an interrupted split leaves no half to be taken as done.
    for path, part in ((second, lines[cut:]), (first, lines[:cut])):
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(b"".join(part))
        tmp.replace(path)


def merge_halves(first: Path, out: Path, a: Path, b: Path) -> None:
    with open(first, "rb") as f:
        offset = sum(1 for _ in f)
    for half in (a, b):
        if not half.exists():
            raise SystemExit(f"prep.py: {half} missing: a worker wrote no detections file")
    with open(out, "wb") as merged:
        merged.write(a.read_bytes())
        with open(b, "rb") as f:
            for raw in f:
                if not raw.strip():
                    continue
                d = json.loads(raw)
                source = d.get("source") or {}
                if isinstance(source.get("position"), int):
                    source["position"] += offset
                merged.write(json.dumps(d, separators=(",", ":")).encode() + b"\n")


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "events":
        out, limit, startup, times = Path(argv[1]), None, None, 1
        rest, events_dir = argv[2:-1], Path(argv[-1])
        while rest:
            flag, value, rest = rest[0], rest[1], rest[2:]
            if flag == "--limit":
                limit = None if value in ("", "all") else int(value)
            elif flag == "--startup":
                startup = Path(value)
            elif flag == "--times":
                times = int(value)
                if times < 1:
                    raise SystemExit("prep.py: --times must be at least 1")
            else:
                raise SystemExit(f"prep.py: unknown option {flag}")
        n = number_events(events_dir, out, limit, startup, times)
        print(f"prep.py: {n} events -> {out}", file=sys.stderr)
        return 0
    if len(argv) == 4 and argv[0] == "halves":
        halves(Path(argv[1]), Path(argv[2]), Path(argv[3]))
        return 0
    if len(argv) == 5 and argv[0] == "merge-halves":
        merge_halves(Path(argv[1]), Path(argv[2]), Path(argv[3]), Path(argv[4]))
        return 0
    if len(argv) == 4 and argv[0] == "any-profile":
        any_profile(Path(argv[1]), Path(argv[2]), Path(argv[3]))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
