#!/usr/bin/env python3
"""Agreement of Sigma engines on (rule id, input line) pairs, for a benches/peers run directory.

    agree.py RUN_DIR [--top N]

For each pair of engines that answer the same question (see PAIRS), prints |both|, |only A|,
|only B|, and groups the disagreements by rule with a short explanation where one can be
determined from the inputs (rule not loaded by an engine, event skipped by chainsaw, logsource
routing, field fallbacks of Tocsin's profile). Writes RUN_DIR/agreement.json with the details.
Python standard library only; rule files and profiles are read with small line-based readers
(enough for SigmaHQ's layout), not a YAML library.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, str(Path(__file__).resolve().parent))
import peerout  # noqa: E402

# (A, B, what to expect). Only pairs whose two engines both ran are reported.
PAIRS = [
    ("tocsin", "pysigma", "same routing and field table (Tocsin's sysmon profile): expected identical"),
    ("tocsin", "tocsin-calibrated", "prefilters calibrated on the first 5,000 events: expected identical"),
    ("tocsin", "tocsin-frequencies", "prefilters from a table saved from the first 5,000 events: expected identical"),
    ("tocsin", "tocsin-x2", "two workers over the two halves of the events: expected identical"),
    ("rsigma-sysmon", "rsigma-sysmon-x2", "two workers over the two halves of the events: expected identical"),
    ("tocsin", "rsigma-sysmon", "both gate by logsource; rsigma's sysmon pipeline adds EventID per category only"),
    ("tocsin", "chainsaw", "both gate by logsource; chainsaw: Provider + EventID, needs @timestamp (informative)"),
    ("tocsin-any", "pysigma-any", "no logsource conditions, field names verbatim: expected identical"),
    ("tocsin-any", "rsigma", "no logsource conditions, field names verbatim: expected identical"),
    ("rsigma", "hayabusa", "both ignore logsource"),
    ("tocsin-any", "hayabusa", "both ignore logsource"),
]

SYSMON_CHANNEL = "microsoft-windows-sysmon/operational"
PROFILE_ROUTED = {"tocsin", "tocsin-calibrated", "tocsin-frequencies", "pysigma"}  # routed by Tocsin's sysmon profile
# A Sigma wildcard escaped with an odd number of backslashes (`\*`, `\\\*`), i.e. a literal * or ?.
ESCAPED_WILDCARD = re.compile(r"(?<!\\)(?:\\\\)*\\[*?]")
KEY = re.compile(r"^(\s*)(?:-\s+)?([^\s:#'\"][^:#]*?|'[^']*'|\"[^\"]*\")\s*:(?:\s+(.*))?$")


# --------------------------------------------------------------------------------------------
# Rules, profile, events
# --------------------------------------------------------------------------------------------


def read_rules(rules_dir: Path) -> dict[str, dict]:
    """Rule id -> {title, path, logsource {dim: value}, fields (detection field names),
    null_fields (fields a detection item compares with `null`)}."""
    rules = {}
    for path in sorted(rules_dir.rglob("*.yml")):
        info = {"path": str(path.relative_to(rules_dir)), "logsource": {}, "fields": set(),
                "title": "", "id": None, "escaped_wildcard": False, "null_fields": set()}
        block, child_indent = None, None
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if not line[0].isspace():
                m = KEY.match(line)
                key = m.group(2) if m else None
                value = (m.group(3) or "").strip().strip("'\"") if m else ""
                if key == "id" and info["id"] is None:
                    info["id"] = value
                elif key == "title":
                    info["title"] = value
                block, child_indent = key, None
                continue
            m = KEY.match(line)
            if not m:
                continue
            indent = len(m.group(1))
            name = m.group(2).strip("'\"")
            if block == "logsource" and name in ("category", "product", "service"):
                info["logsource"][name] = (m.group(3) or "").split("#")[0].strip().strip("'\"").lower()
            elif block == "detection":
                if ESCAPED_WILDCARD.search(line):
                    info["escaped_wildcard"] = True
                if child_indent is None:
                    child_indent = indent
                if indent > child_indent or line.lstrip().startswith("-"):
                    info["fields"].add(name.split("|")[0])
                    if (m.group(3) or "").split("#")[0].strip() in ("null", "Null", "NULL", "~"):
                        info["null_fields"].add(name.split("|")[0])
        if info["id"]:
            rules.setdefault(info["id"], info)
    return rules


FLOW_PAIR = re.compile(r"""([^\s{},:'"]+|'[^']*'|"[^"]*")\s*:\s*('[^']*'|"[^"]*"|[^,}]+)""")


def unquote(s: str) -> str:
    s = s.strip()
    return s[1:-1] if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"" else s


def read_profile(path: Path) -> dict:
    """{'routes': {dim: {value: [ {field: value} ]}}, 'fields': {sigma: [event fields]}}."""
    routes = {"category": {}, "product": {}, "service": {}}
    fields: dict[str, list[str]] = {}
    section, dim, value = None, None, None
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        stripped = line.strip()
        if indent == 0:
            section = stripped.split(":")[0]
            continue
        if section == "fields" and indent == 2:
            k, _, v = stripped.partition(":")
            v = v.strip()
            items = v[1:-1].split(",") if v.startswith("[") else [v]
            fields[unquote(k)] = [unquote(i) for i in items if i.strip()]
        elif section == "logsources":
            if indent == 2:
                dim = stripped.rstrip(":")
            elif indent == 4 and dim in routes:
                value = unquote(stripped.split(":")[0]).lower()
                routes[dim][value] = []
            elif stripped.startswith("- {") and dim in routes and value is not None:
                alt = {unquote(k): unquote(v) for k, v in FLOW_PAIR.findall(stripped[2:])}
                routes[dim][value].append(alt)
    return {"routes": routes, "fields": fields}


def route_ok(profile: dict, logsource: dict, event: dict) -> bool | None:
    """Does the event satisfy the profile's route for this logsource? None: rule not covered."""
    for dim, value in logsource.items():
        alts = profile["routes"].get(dim, {}).get(value)
        if alts is None:
            return None
        if alts and not any(
            all(str(event.get(f, "")).lower() == str(v).lower() for f, v in alt.items())
            for alt in alts
        ):
            return False
    return True


def read_events(path: Path, wanted: set[int]) -> dict[int, dict]:
    out = {}
    if not wanted:
        return out
    top = max(wanted)
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            if n in wanted:
                try:
                    out[n] = json.loads(raw)
                except json.JSONDecodeError:
                    out[n] = {}
            if n >= top:
                break
    return out


# --------------------------------------------------------------------------------------------
# Which rules each engine did not load
# --------------------------------------------------------------------------------------------


def not_loaded(engine: str, run: Path, rules: dict, summary: dict) -> dict[str, str]:
    """Rule id -> reason, for the rules an engine set aside (where the engine tells us)."""
    out: dict[str, str] = {}
    if engine.startswith("tocsin"):
        p = run / "work" / f"{engine}.rules-check.json"
        if p.exists():
            for d in json.loads(p.read_text()).get("diagnostics", []):
                if d.get("rule_id") and (d.get("code") == "not-applicable" or d.get("severity") == "error"):
                    out[d["rule_id"]] = f"Tocsin: {d.get('code')}"
    elif engine.startswith("pysigma"):
        p = run / f"{engine}.out"
        if p.exists():
            data = json.loads(p.read_text())
            for rid in data.get("not_applicable", []):
                out[rid] = "pySigma: logsource not in profile"
            for key in ("conversion_errors", "query_errors"):
                for rid, msg in data.get(key, {}).items():
                    out[rid] = f"pySigma {key[:-7]} error: {msg.split(':')[0][:60]}"
    elif engine == "chainsaw":
        p = run / "work" / "chainsaw.lint.stderr"
        by_path = {v["path"]: k for k, v in rules.items()}
        for line in (p.read_text(errors="replace").splitlines() if p.exists() else []):
            m = re.match(r"\[!\] /?(.+?\.yml): (.*)$", line)
            if m and m.group(1) in by_path:
                out[by_path[m.group(1)]] = f"chainsaw cannot load it ({m.group(2)[:50]})"
        mapping = Path(summary.get("chainsaw_mapping") or "")
        if mapping.is_file():
            excluded, in_ex = set(), False
            for line in mapping.read_text().splitlines():
                if line.startswith("exclusions:"):
                    in_ex = True
                    continue
                if in_ex:
                    if line.startswith("- "):
                        excluded.add(unquote(line[2:]))
                    elif line.strip():
                        in_ex = False
            for rid, info in rules.items():
                if info["title"] in excluded:
                    out[rid] = "excluded by title in chainsaw's mapping"
    elif engine == "hayabusa":
        cfg = Path(summary.get("hayabusa_config") or "")
        for name in ("exclude_rules.txt", "noisy_rules.txt"):
            p = cfg / name
            for line in (p.read_text(errors="replace").splitlines() if p.exists() else []):
                rid = line.split("#")[0].strip()
                if rid:
                    out[rid] = f"skipped by hayabusa rules/config/{name}"
    return out


# --------------------------------------------------------------------------------------------
# Explanations
# --------------------------------------------------------------------------------------------


def chainsaw_mapping(path: Path) -> tuple[dict[str, str], list[dict]]:
    """From chainsaw's mapping file: field renames (from -> to) and the logsource preconditions,
    each {'for': {dimension or 'id': value}, 'alts': [{field: [values]}]}."""
    renames, pre = {}, []
    if not path.is_file():
        return renames, pre
    last_from, in_ext, cur, part, alt, list_key = None, False, None, None, None, None
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        s = line.strip()
        if s.startswith("- from:") or s.startswith("from:"):
            last_from = unquote(s.split(":", 1)[1])
        elif s.startswith("to:") and last_from:
            renames[last_from] = unquote(s.split(":", 1)[1])
            last_from = None
        if not line[0].isspace():
            in_ext = s.startswith("extensions:")
            continue
        if not in_ext:
            continue
        if s == "- for:":
            cur, part, alt = {"for": {}, "alts": []}, "for", None
            pre.append(cur)
        elif s == "filter:":
            part, alt = "filter", None
        elif cur is not None and part == "for":
            k, _, v = s.partition(":")
            cur["for"][k.strip().removeprefix("logsource.")] = unquote(v.split(" #")[0]).lower()
        elif cur is not None and part == "filter":
            if s.startswith("- ") and ":" not in s[2:] and alt is not None:
                alt[list_key].append(unquote(s[2:].split(" #")[0]))
                continue
            if s.startswith("- ") or alt is None:
                alt = {}
                cur["alts"].append(alt)
                s = s[2:] if s.startswith("- ") else s
            k, _, v = s.partition(":")
            list_key = k.strip()
            alt[list_key] = [unquote(v.split(" #")[0])] if v.strip() else []
    return renames, pre


def field_value(event: dict, key: str, renames: dict[str, str]) -> tuple[str, bool]:
    """(event value as text, compare as integer?) for a chainsaw filter key like int(EventID)."""
    as_int = key.startswith("int(") and key.endswith(")")
    name = key[4:-1] if as_int else key
    return str(event.get(renames.get(name, name), "")), as_int


def gate(engine: str, rule: dict, event: dict, ctx: dict) -> bool | None:
    """Does the engine's logsource handling admit the event for this rule? None: unknown.

    tocsin/pysigma: the sysmon profile's route. rsigma-sysmon: EventID only, approximated by
    the Sysmon EventIDs of the profile's category table (both follow pySigma's sysmon
    pipeline); service rules ungated. chainsaw: the preconditions of its mapping file.
    Engines without logsource handling admit everything. An `-x2` engine routes as the
    engine it runs twice."""
    engine = peerout.base(engine)
    ls = rule["logsource"]
    if engine in PROFILE_ROUTED:
        return route_ok(ctx["profile"], ls, event)
    if engine == "rsigma-sysmon":
        if "category" not in ls:
            return True
        alts = ctx["profile"]["routes"]["category"].get(ls["category"])
        if alts is None:
            return None
        ids = {str(a.get("EventID")) for a in alts if a.get("Channel", "").lower() == SYSMON_CHANNEL}
        return str(event.get("EventID")) in ids
    if engine == "chainsaw":
        renames, pre = ctx["chainsaw"]
        for p in pre:
            if not all((rule["id"] if k == "id" else ls.get(k)) == v for k, v in p["for"].items()):
                continue
            def alt_ok(alt):
                for key, values in alt.items():
                    got, as_int = field_value(event, key, renames)
                    want = {v.lower() for v in values}
                    if (got.strip() if as_int else got.lower()) not in want:
                        return False
                return True
            if not any(alt_ok(alt) for alt in p["alts"]):
                return False
        return True
    return True


def explain(missing: str, present: str, rule: dict | None, event: dict, ctx: dict) -> str:
    """Why `missing` does not report the pair `present` reports (best guess from the inputs)."""
    rid = rule and rule.get("id")
    reason = ctx["not_loaded"].get(missing, {}).get(rid)
    missing, present = peerout.base(missing), peerout.base(present)
    if reason:
        return f"rule not loaded by {missing}: {reason}"
    if rule is None:
        return "rule not in the rules directory"
    if missing == "chainsaw" and "@timestamp" not in event:
        return "event without @timestamp (chainsaw skips it)"
    ls = {k: v for k, v in rule["logsource"].items() if k != "product"}
    dims = ", ".join(f"{k} {v}" for k, v in sorted(ls.items())) or "no category/service"
    where = f"{event.get('Channel', '?')}/{event.get('EventID', '?')}"
    if gate(missing, rule, event, ctx) is False and gate(present, rule, event, ctx) is not False:
        if present == "rsigma-sysmon" and "category" not in ls:
            return f"routing: rsigma -p sysmon does not gate {dims} (event {where})"
        return f"routing: {missing} gates {dims} out (event {where}), {present} does not"
    if present in PROFILE_ROUTED and missing not in PROFILE_ROUTED:
        renames = ctx["chainsaw"][0] if missing == "chainsaw" else {}
        for f in sorted(rule["fields"]):
            for alt in ctx["profile"]["fields"].get(f, [])[1:]:
                if f not in event and alt in event and renames.get(f) != alt:
                    return f"field fallback in Tocsin's profile: {f} <- {alt}"
    if "chainsaw" in (missing, present):
        # tau-engine (solver.rs) evaluates `F: null` on an event without F as Missing, not True;
        # an `or` drops Missing for a False sibling, so `not 1 of filter_*` passes (and a positive
        # `F: null` never matches). The Sigma convention: null = absent or null.
        renames = ctx["chainsaw"][0]
        absent = sorted(f for f in rule["null_fields"] if renames.get(f, f) not in event)
        if absent:
            return (f"`{absent[0]}: null`, event without {absent[0]}: chainsaw's tau-engine "
                    "takes an absent field as missing, not null")
    if "hayabusa" in (missing, present):
        aliases = ctx["hayabusa_aliases"]
        for f in sorted(rule["fields"]):
            if f in aliases and f not in event:
                return f"hayabusa reads {f} from {aliases[f]} (its eventkey_alias; the event has no {f})"
        if rule["escaped_wildcard"]:
            return "escaped wildcard (\\*) in the rule: hayabusa's own unescaping (likely)"
    return "unexplained"


def hayabusa_aliases(cfg: str) -> dict[str, str]:
    """Sigma field -> event path, for the entries of hayabusa's eventkey_alias.txt that read
    something other than the field itself (for JSON-lines input hayabusa puts the whole line
    under both Event.EventData and Event.System, so those two spellings are the field itself)."""
    p = Path(cfg or "") / "eventkey_alias.txt"
    out = {}
    if p.exists():
        for line in p.read_text(errors="replace").splitlines():
            name, _, target = line.partition(",")
            name, target = name.strip(), target.strip()
            if name and target and target not in (f"Event.EventData.{name}", f"Event.System.{name}"):
                out[name] = target
    return out


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--top", type=int, default=12, help="rules listed per pair (default 12)")
    a = ap.parse_args()
    run = a.run_dir
    summary = json.loads((run / "summary.json").read_text())
    rules = read_rules(Path(summary["rules_dir"]))
    for rid, info in rules.items():
        info["id"] = rid
    profile = read_profile(run / "work" / "tocsin-rules" / "profiles" / "sysmon.yaml")

    ran = [e["engine"] for e in summary["engines"] if e["status"] == "ok"]
    pairs = {e: peerout.read_pairs(run, e) for e in ran}
    pairs = {e: p[1] for e, p in pairs.items() if p is not None}
    todo = [(x, y, why) for x, y, why in PAIRS if x in pairs and y in pairs]

    wanted = set()
    for x, y, _ in todo:
        wanted |= {line for _, line in pairs[x] ^ pairs[y]}
    events = read_events(Path(summary["events_file"]), wanted)
    ctx = {
        "profile": profile,
        "not_loaded": {e: not_loaded(e, run, rules, summary) for e in pairs},
        "hayabusa_aliases": hayabusa_aliases(summary.get("hayabusa_config", "")),
        "chainsaw": chainsaw_mapping(Path(summary.get("chainsaw_mapping") or "")),
    }

    report = {"events": summary["events"], "pairs": []}
    print(f"\nAgreement on (rule id, line) pairs, {summary['events']} events")
    print("| A | B | A pairs | B pairs | both | only A | only B | expectation |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    details = []
    for x, y, why in todo:
        both, only_x, only_y = pairs[x] & pairs[y], pairs[x] - pairs[y], pairs[y] - pairs[x]
        print(f"| {x} | {y} | {len(pairs[x])} | {len(pairs[y])} | {len(both)} | {len(only_x)} | {len(only_y)} | {why} |")
        by_rule: dict[str, dict] = defaultdict(lambda: {"only_a": 0, "only_b": 0, "why": Counter(), "lines": []})
        by_cat: Counter = Counter()
        for side, diff, missing, present in (("only_a", only_x, y, x), ("only_b", only_y, x, y)):
            for rid, line in sorted(diff):
                cat = explain(missing, present, rules.get(rid), events.get(line, {}), ctx)
                r = by_rule[rid]
                r[side] += 1
                r["why"][f"only {present}: {cat}"] += 1
                if len(r["lines"]) < 5:
                    r["lines"].append(line)
                by_cat[f"only {present}: {cat}"] += 1
        rows = sorted(by_rule.items(), key=lambda kv: -(kv[1]["only_a"] + kv[1]["only_b"]))
        entry = {
            "a": x, "b": y, "expectation": why, "a_pairs": len(pairs[x]), "b_pairs": len(pairs[y]),
            "both": len(both), "only_a": len(only_x), "only_b": len(only_y),
            "rules_only_in_a": len({r for r, _ in pairs[x]} - {r for r, _ in pairs[y]}),
            "rules_only_in_b": len({r for r, _ in pairs[y]} - {r for r, _ in pairs[x]}),
            "by_category": dict(by_cat.most_common()),
            "by_rule": [
                {"rule_id": rid, "title": (rules.get(rid) or {}).get("title", ""),
                 "only_a": r["only_a"], "only_b": r["only_b"], "why": dict(r["why"].most_common()),
                 "sample_lines": r["lines"]}
                for rid, r in rows
            ],
        }
        report["pairs"].append(entry)
        if by_cat:
            details.append(entry)

    for entry in details:
        x, y = entry["a"], entry["b"]
        print(f"\n{x} vs {y}: {entry['only_a']} only {x}, {entry['only_b']} only {y}; "
              f"rules fired by one only: {entry['rules_only_in_a']} / {entry['rules_only_in_b']}")
        for cat, n in entry["by_category"].items():
            print(f"  {n:6d}  {cat}")
        print(f"  by rule (top {a.top}): only {x} / only {y}  id  title  [main reason]")
        for r in entry["by_rule"][: a.top]:
            main_why = next(iter(r["why"]))
            print(f"    {r['only_a']:5d} / {r['only_b']:<5d} {r['rule_id'][:8]}  {r['title'][:50]}  [{main_why.split(': ', 1)[1]}]")
        if len(entry["by_rule"]) > a.top:
            print(f"    ... {len(entry['by_rule']) - a.top} more rules in agreement.json")
    (run / "agreement.json").write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
