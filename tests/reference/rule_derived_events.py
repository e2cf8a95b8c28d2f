#!/usr/bin/env python3
"""Events made from Sigma rules' own values, for a reference comparison without real logs.

The pySigma comparison over the OTRF events covers SigmaHQ's Windows rules only: there are
no real Linux, web or proxy logs in the test data. This script writes events that exercise
such rules anyway, made from each rule's detection values:

- events per selection (per map of a list of maps, up to three; one for each value of its
  fields' value lists, up to twelve), holding exactly what the selection asks for: a `contains` value with text around it, a `startswith` value
  followed by text, an `endswith` value preceded by text, wildcards filled in, a CIDR's
  first address, a number past a `gt`/`lt` bound, `|windash` flags with other dashes, the
  base64 spelling of a `|base64`/`|base64offset` value (UTF-16 too), keywords in a `message`
  field;
- one event with all the rule's selections but its filters, and one with the filters too;
- that event with every value upper-cased (case-insensitive matching), and with every value
  cut short by one character (a near miss);
- values a selection lists under `|all` in one value;
- each keyword event again with its keyword inside a nested object's array.

Every event is matched against every rule on both sides, so an event made from one rule is
a negative (or an accidental positive) for all the others. Regular expressions are not
turned into text; their selections are simply not met by the event made for them.

It also writes the profile both sides use: every logsource value of the rules maps to no
condition, and there are no field fallbacks, so each rule's detection is tested on every
event with its field names as written.

    python rule_derived_events.py --rules DIR [--rules DIR ...] --events OUT.jsonl \
        --profile OUT.yaml

The output depends only on the rules (a fixed seed per rule id).
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import json
import random
from pathlib import Path

import yaml

# The rule files and their documents are read as the reference script reads them.
from sigma_sqlite_reference import raw_documents, rule_files

KEYWORD_FIELD = "message"
MAX_MAPS = 3
MAX_VALUES = 12


def literal(value: str, rng: random.Random) -> str:
    """A Sigma string with its wildcards filled in and its escapes read."""
    out, i = [], 0
    while i < len(value):
        c = value[i]
        if c == "\\" and i + 1 < len(value) and value[i + 1] in "*?\\":
            out.append(value[i + 1])
            i += 2
            continue
        if c == "*":
            out.append(rng.choice(["", "ab", "x y"]))
        elif c == "?":
            out.append("q")
        else:
            out.append(c)
        i += 1
    return "".join(out)


DASHES = ["-", "/", "\u2013", "\u2014", "\u2015"]


def windash(text: str, rng: random.Random) -> str:
    """Each dash that starts a flag (at the start or after a space) replaced by a dash or
    slash of its own choosing, as `|windash` allows."""
    out = []
    for i, c in enumerate(text):
        if c in "-/" and (i == 0 or text[i - 1] == " "):
            out.append(rng.choice(DASHES))
        else:
            out.append(c)
    return "".join(out)


def encoded(text: str, modifiers: list[str]) -> str:
    """`text` as the base64 modifiers write it (offset 0 for `base64offset`)."""
    if "wide" in modifiers or "utf16le" in modifiers:
        raw = text.encode("utf-16-le")
    elif "utf16be" in modifiers:
        raw = text.encode("utf-16-be")
    elif "utf16" in modifiers:
        raw = b"\xff\xfe" + text.encode("utf-16-le")
    else:
        raw = text.encode("utf-8")
    b64 = base64.b64encode(raw).decode("ascii")
    if "base64offset" in modifiers:
        # The first of the three shifted spellings: without the characters that depend on
        # what follows the value.
        cut = (0, 3, 2)[len(raw) % 3]
        return b64[:-cut] if cut else b64
    return b64


def example(value, modifiers: list[str], rng: random.Random):
    """A value that the Sigma value `value` under `modifiers` matches, or None."""
    if "exists" in modifiers:
        return "present" if value is True else None
    if value is None:
        return None
    if any(m in ("re", "expand", "fieldref") for m in modifiers):
        return None
    for op, step in (("gt", 1), ("gte", 0), ("lt", -1), ("lte", 0)):
        if op in modifiers:
            return value + step if isinstance(value, (int, float)) else None
    if "cidr" in modifiers:
        try:
            net = ipaddress.ip_network(str(value), strict=False)
        except ValueError:
            return None
        return str(net.network_address + (1 if net.num_addresses > 1 else 0))
    if not isinstance(value, str):
        return value
    text = literal(value, rng)
    if "windash" in modifiers:
        text = windash(text, rng)
    if "base64" in modifiers or "base64offset" in modifiers:
        text = encoded(text, modifiers)
    if "contains" in modifiers:
        return f"pre {text} post"
    if "startswith" in modifiers:
        return f"{text} tail"
    if "endswith" in modifiers:
        return f"head {text}"
    return text


def split_key(key: str) -> tuple[str, list[str]]:
    field, *mods = str(key).split("|")
    return field, mods


def map_events(item: dict, rng: random.Random) -> list[dict]:
    """Events for one selection map, taking each field's values in turn (the `i`th event
    has every field's `i`th value, wrapping round), as many as the longest list, up to
    MAX_VALUES; an `|all` list is one value. A keyword map goes to KEYWORD_FIELD."""
    fields = []
    for key, values in item.items():
        field, mods = split_key(key)
        values = values if isinstance(values, list) else [values]
        made = [example(v, mods, rng) for v in values]
        made = [m for m in made if m is not None]
        if not made:
            continue
        if "all" in mods and all(isinstance(m, str) for m in made):
            made = [" ".join(made)]
        fields.append((field or KEYWORD_FIELD, made))
    count = min(MAX_VALUES, max((len(made) for _, made in fields), default=0))
    return [{field: made[i % len(made)] for field, made in fields} for i in range(count)]


def selection_events(item, rng: random.Random) -> list[dict]:
    """Events meeting one named detection item: a map, a list of maps, or keywords."""
    if isinstance(item, dict):
        return map_events(item, rng)
    if isinstance(item, list):
        if all(isinstance(x, dict) for x in item):
            return [e for x in item[:MAX_MAPS] for e in map_events(x, rng)]
        keywords = [example(k, ["contains"], rng) for k in item[:MAX_VALUES]]
        return [{KEYWORD_FIELD: k} for k in keywords if k is not None]
    if isinstance(item, str):
        return [{KEYWORD_FIELD: example(item, ["contains"], rng)}]
    return []


def upper(event: dict) -> dict:
    """Every value with its ASCII letters upper-cased. Only ASCII: pySigma's SQLite backend
    folds ASCII letters only, Tocsin all of them (rules/README.md)."""
    return {
        k: "".join(c.upper() if c.isascii() else c for c in v) if isinstance(v, str) else v
        for k, v in event.items()
    }


def is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def cut_short(event: dict) -> dict:
    """Every value one character short, but IP addresses: pySigma's SQLite backend turns a
    CIDR into text prefixes, which a cut address ('127.0.0.') still has, while Tocsin
    reads the address, and a cut one is none."""
    return {
        k: v[:-1] if isinstance(v, str) and len(v) > 1 and not is_address(v) else v
        for k, v in event.items()
    }


def rule_events(doc: dict) -> list[dict]:
    rng = random.Random(str(doc.get("id")))
    detection = doc.get("detection") or {}
    named = {k: v for k, v in detection.items() if k not in ("condition", "timeframe")}
    events = []
    merged, merged_with_filters = {}, {}
    for name, item in named.items():
        made = selection_events(item, rng)
        events.extend(e for e in made if e)
        for e in made[:1]:
            merged_with_filters.update(e)
            if not name.startswith("filter"):
                merged.update(e)
    for e in (merged, merged_with_filters, upper(merged), cut_short(merged)):
        if e and e not in events:
            events.append(e)
    # Keywords inside nested objects and arrays (ECS events nest their fields).
    for e in list(events):
        if KEYWORD_FIELD in e:
            nested = {k: v for k, v in e.items() if k != KEYWORD_FIELD}
            nested["payload"] = {"args": ["-x", e[KEYWORD_FIELD]], "depth": {"n": 1}}
            events.append(nested)
    return events


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rules", action="append", required=True, type=Path)
    p.add_argument("--events", required=True, type=Path)
    p.add_argument("--profile", required=True, type=Path)
    args = p.parse_args(argv)

    files = rule_files(args.rules)
    logsources = {"category": set(), "product": set(), "service": set()}
    count = 0
    with args.events.open("w", encoding="utf-8") as out:
        for f in files:
            docs = raw_documents(f.read_text(encoding="utf-8"))
            for doc in docs:
                for dim, values in logsources.items():
                    value = (doc.get("logsource") or {}).get(dim)
                    if value is not None:
                        values.add(str(value))
                if "detection" not in doc:
                    continue
                for n, event in enumerate(rule_events(doc)):
                    event = {"rule_source": f.name, "variant": n, **event}
                    out.write(json.dumps(event, ensure_ascii=False) + "\n")
                    count += 1
    profile = {
        "name": "rule-derived",
        "description": "every logsource value maps to no condition; field names verbatim",
        "logsources": {dim: {v: [] for v in sorted(vals)} for dim, vals in logsources.items()},
    }
    args.profile.write_text(yaml.safe_dump(profile, sort_keys=False), encoding="utf-8")
    print(f"{count} events from {len(files)} files", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
