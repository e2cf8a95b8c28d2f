"""Readers for each engine's raw output in a benches/peers run directory (stdlib only).

Every reader returns (detections, pairs): the number of detections the engine wrote, and the
set of (rule id, input line) pairs they name. The input line is the 1-based line of the
prepared events file, which prep.py also wrote into every event as `_line`:
- tocsin: `tocsin.detection/v1` lines; `rule.id` and `source.position` (the line number of
  the input file, which Tocsin records itself; it does not copy event fields).
- pysigma: the reference script's JSON, `matches` = {rule id: [line, ...]}.
- rsigma: `rule_id` and `event._line` from the identity run (`--include-event`); the timed run
  writes no event, so it only gives the detection count.
- chainsaw: `id` and `document.data._line`.
- hayabusa: `RuleID` and `ExtraFieldInfo._line` (or `_line` at the top or in Details).
"""

from __future__ import annotations

import json
from pathlib import Path

# Engine -> the question it answers (engines with the same question are compared).
QUESTION = {
    "tocsin": "routed by Tocsin's sysmon profile (Channel + EventID, field fallbacks)",
    "pysigma": "routed by Tocsin's sysmon profile (Channel + EventID, field fallbacks)",
    "rsigma-sysmon": "routed by EventID per category (rsigma sysmon pipeline)",
    "chainsaw": "routed by Provider + EventID per category (chainsaw mapping)",
    "tocsin-any": "no logsource conditions, field names verbatim",
    "tocsin-calibrated": "routed by Tocsin's sysmon profile (Channel + EventID, field fallbacks)",
    "tocsin-frequencies": "routed by Tocsin's sysmon profile (Channel + EventID, field fallbacks)",
    "pysigma-any": "no logsource conditions, field names verbatim",
    "rsigma": "no logsource conditions, field names verbatim",
    "hayabusa": "no logsource conditions (hayabusa's own field aliases)",
}


def _json_lines(path: Path):
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                yield {"_unparsable_line": n}


def _as_line(v) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str) and v.strip().isdigit():
        return int(v.strip())
    return None


class Unreadable(Exception):
    pass


def read_tocsin(path: Path):
    count, pairs = 0, set()
    for d in _json_lines(path):
        if d.get("kind") != "sigma":
            continue
        count += 1
        rule, src = d.get("rule") or {}, d.get("source") or {}
        line = _as_line(src.get("position"))
        if rule.get("id") and line is not None:
            pairs.add((rule["id"], line))
    return count, pairs


def read_pysigma(path: Path):
    data = json.loads(path.read_text(encoding="utf-8"))
    pairs = {(rid, int(line)) for rid, lines in data.get("matches", {}).items() for line in lines}
    return len(pairs), pairs


def read_rsigma(path: Path):
    count, pairs = 0, set()
    for d in _json_lines(path):
        if "rule_id" not in d and "rule_title" not in d:
            continue
        count += 1
        line = _as_line((d.get("event") or {}).get("_line"))
        if d.get("rule_id") and line is not None:
            pairs.add((d["rule_id"], line))
    return count, pairs


def read_chainsaw(path: Path):
    count, pairs = 0, set()
    for d in _json_lines(path):
        if d.get("group") is None and d.get("id") is None:
            continue
        count += 1
        docs = d.get("documents") or [d.get("document") or {}]
        for doc in docs:
            line = _as_line((doc.get("data") or {}).get("_line"))
            if d.get("id") and line is not None:
                pairs.add((d["id"], line))
    return count, pairs


def read_hayabusa(path: Path):
    count, pairs = 0, set()
    for d in _json_lines(path):
        if "RuleID" not in d and "RuleTitle" not in d:
            continue
        count += 1
        line = None
        for holder in (d.get("ExtraFieldInfo"), d, d.get("Details")):
            if isinstance(holder, dict) and "_line" in holder:
                line = _as_line(holder["_line"])
                break
        if d.get("RuleID") and line is not None:
            pairs.add((d["RuleID"], line))
    return count, pairs


READERS = {
    "tocsin": read_tocsin,
    "tocsin-any": read_tocsin,
    "tocsin-calibrated": read_tocsin,
    "tocsin-frequencies": read_tocsin,
    "pysigma": read_pysigma,
    "pysigma-any": read_pysigma,
    "rsigma": read_rsigma,
    "rsigma-sysmon": read_rsigma,
    "chainsaw": read_chainsaw,
    "hayabusa": read_hayabusa,
}


def base(engine: str) -> str:
    """The engine that an `-x2` engine (two processes of it over the two halves of the
    events, see two-workers.sh) runs: its output, question and routing are that engine's."""
    return engine.removesuffix("-x2")


def question(engine: str) -> str:
    """The question the engine's (rule, line) pairs answer."""
    return QUESTION.get(base(engine), "")


def identity_file(run_dir: Path, engine: str) -> Path:
    """The output that names event lines (rsigma: the separate --include-event run)."""
    ids = run_dir / f"{engine}.ids.out"
    return ids if ids.exists() else run_dir / f"{engine}.out"


def read_pairs(run_dir: Path, engine: str):
    """(detections, pairs) of an engine, or None when its output is missing."""
    path = identity_file(run_dir, engine)
    if base(engine) not in READERS or not path.exists():
        return None
    return READERS[base(engine)](path)


def read_detection_count(run_dir: Path, engine: str) -> int | None:
    """Detections written by the timed run."""
    path = run_dir / f"{engine}.out"
    if base(engine) not in READERS or not path.exists():
        return None
    return READERS[base(engine)](path)[0]
