#!/usr/bin/env python3
"""Reference answers for Tocsin's SigmaHQ conformance test, computed with pySigma + SQLite.

Tocsin matches Sigma rules with its own engine. To check its answers against an independent
implementation, this script converts the same rules with pySigma's SQLite backend, runs the
queries over the same events loaded into an in-memory SQLite table, and writes which event
lines every rule matches. A Rust test compares Tocsin's matches with this file.

    python sigma_sqlite_reference.py --rules DIR [--rules DIR ...] --events EVENTS.jsonl \
        --output reference.json [--profile rules/profiles/sysmon.yaml]

What is taken from Tocsin, so that both sides answer the same question:
- the logsource routing (category/product/service -> Channel/EventID alternatives) and
- the Sigma-field fallbacks (Image <- NewProcessName, 'Threat Name' -> ThreatName, ...),
both read from Tocsin's field-mapping profile (default: rules/profiles/sysmon.yaml). That is
configuration, not matching logic; everything that decides whether a value matches is
pySigma's and the SQLite backend's.

The result is JSON:
    {"pysigma_version", "backend_version", "rules_total", "rules_converted",
     "not_applicable": [rule ids], "conversion_errors": {id: message},
     "query_errors": {id: message}, "matches": {id: [1-based line numbers]}}
"""

from __future__ import annotations

import argparse
import functools
import gzip
import importlib.metadata
import json
import re
import sqlite3
import sys
import time
from collections import Counter
from pathlib import Path

import yaml
from sigma.backends.sqlite import sqliteBackend
from sigma.backends.sqlite.correlation import numeric
from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationRule
from sigma.filters import SigmaFilter
from sigma.policy import default_policy
from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.processing.transformations import FieldFunctionTransformation
from sigma.rule import SigmaRule

DEFAULT_PROFILE = Path(__file__).resolve().parents[2] / "rules" / "profiles" / "sysmon.yaml"

TABLE = "logs"  # the backend's default table name ("SELECT * FROM logs WHERE ...")

# Column holding the text of all the event's values (those inside objects and arrays too,
# one by one, without keys), for keyword (field-less) searches.
# Event-field columns always contain '#' (see column_name), so this name cannot collide.
FULLTEXT_COLUMN = "_fulltext"
# Joins the values in FULLTEXT_COLUMN. Keywords never contain it, so a keyword without
# wildcards cannot match across two values, and REGEXP tests each value on its own.
# Known limit: a keyword with an inner wildcard ('mimi*katz') is a LIKE whose '%' can span
# two values; Sigma (and Tocsin) test each value separately.
VALUE_SEPARATOR = "\x1e"


# --------------------------------------------------------------------------------------------
# Column names
# --------------------------------------------------------------------------------------------


def column_name(field: str) -> str:
    """The SQLite column of an event field (or Sigma field of the same name).

    Sigma field names and JSON keys are case-sensitive (Tocsin reads `ProcessId` and
    `ProcessID` as two fields, and the OTRF data has both), but SQLite column names are not.
    So each column is the field name plus '#' and a hex mask of the positions of its ASCII
    upper-case letters: 'ProcessId' -> 'ProcessId#81', 'ProcessID' -> 'ProcessID#181'. The
    suffix after the last '#' makes the mapping injective and distinct under ASCII case
    folding. The backend quotes these names with backticks.
    """
    mask = 0
    for i, ch in enumerate(field):
        if "A" <= ch <= "Z":
            mask |= 1 << i
    return f"{field}#{mask:x}"


def quote_identifier(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# --------------------------------------------------------------------------------------------
# Profile: logsource routing and field fallbacks
# --------------------------------------------------------------------------------------------


def as_text(value) -> str:
    """A scalar as the text SQLite stores and compares (JSON spelling for non-strings)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


class Profile:
    """The parts of a Tocsin profile this script needs.

    `routes[dimension][value]` is a list of alternatives, each a dict of field -> value that
    must all hold (case-insensitively); an empty list means "no condition". `fields` maps a
    Sigma field to the event fields to read, first present wins.
    """

    def __init__(self, path: Path):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        tables = data.get("logsources") or {}
        self.routes = {
            dim: {str(k): list(v or []) for k, v in (tables.get(dim) or {}).items()}
            for dim in ("category", "product", "service")
        }
        self.fields = {
            str(k): [v] if isinstance(v, str) else list(v)
            for k, v in (data.get("fields") or {}).items()
        }

    def route_sql(self, logsource) -> str | None:
        """SQL for a rule's logsource, "1" for no condition, None if the profile lacks it."""
        clauses = []
        for dim in ("category", "product", "service"):
            value = getattr(logsource, dim, None)
            if value is None:
                continue
            alternatives = self.routes[dim].get(value)
            if alternatives is None:
                return None
            if alternatives:
                clauses.append(" OR ".join(alternative_sql(a) for a in alternatives))
        if not clauses:
            return "1"
        return " AND ".join(f"({c})" for c in clauses)


def alternative_sql(conditions: dict) -> str:
    # Columns are TEXT COLLATE NOCASE, so '=' ignores case ('Security' = 'security').
    parts = [
        f"{quote_identifier(column_name(str(field)))} = {quote_literal(as_text(value))}"
        for field, value in conditions.items()
    ]
    return "(" + " AND ".join(parts) + ")"


# --------------------------------------------------------------------------------------------
# Events -> SQLite
# --------------------------------------------------------------------------------------------


def open_text(path: Path):
    """Open plain or gzip JSON lines (recognised by the gzip magic bytes)."""
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, "r", encoding="utf-8", errors="replace")


def flatten(event: dict, prefix: str = "", out: dict | None = None) -> dict:
    """Top-level members as they are, plus nested object members under dotted names.

    A top-level key equal to a dotted path wins over the nested value, as in Tocsin.
    """
    out = {} if out is None else out
    for key, value in event.items():
        name = prefix + key
        if isinstance(value, dict):
            flatten(value, name + ".", out)
        if not prefix or name not in out:
            out[name] = value
    return out


def scalars(value):
    """Every scalar value inside an object or array, at any depth, in order (not the keys):
    what a keyword search reads, in Tocsin as at the top level."""
    if isinstance(value, dict):
        for v in value.values():
            yield from scalars(v)
    elif isinstance(value, list):
        for v in value:
            yield from scalars(v)
    else:
        yield value


def sql_value(value):
    """JSON value -> stored text; JSON null is an absent field (SQL NULL)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return as_text(value)


def event_row(event: dict, profile: Profile) -> dict[str, str]:
    """Column -> text for one event, with the profile's field fallbacks and the fulltext."""
    fields = flatten(event)
    row = {column_name(k): sql_value(v) for k, v in fields.items()}
    for sigma_field, paths in profile.fields.items():
        present = next((p for p in paths if p in fields), None)
        row[column_name(sigma_field)] = (
            sql_value(fields[present]) if present is not None else None
        )
    values = [sql_value(v) for v in scalars(event)]
    row[FULLTEXT_COLUMN] = VALUE_SEPARATOR.join(v for v in values if v is not None)
    return {k: v for k, v in row.items() if v is not None}


def read_events(path: Path, profile: Profile) -> tuple[list[tuple[int, dict]], int]:
    """(line number, row) for every JSON object line, and the number of lines skipped."""
    rows, skipped = [], 0
    with open_text(path) as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                skipped += 1
                continue
            if not isinstance(event, dict):
                skipped += 1
                continue
            rows.append((line_no, event_row(event, profile)))
    return rows, skipped


def add_column(db: sqlite3.Connection, name: str) -> None:
    # TEXT COLLATE NOCASE is the layout the backend is written for (Zircolite's): '='
    # ignores case, numbers stored as text still equal numeric literals (TEXT affinity).
    db.execute(f"ALTER TABLE {TABLE} ADD COLUMN {quote_identifier(name)} TEXT COLLATE NOCASE")


def build_database(rows: list[tuple[int, dict]], index_columns: list[str]) -> sqlite3.Connection:
    """An in-memory table `logs`, one TEXT column per field, rowid = line number."""
    db = sqlite3.connect(":memory:")
    db.create_function("regexp", 2, sql_regexp, deterministic=True)
    columns = sorted({c for _, row in rows for c in row} | {FULLTEXT_COLUMN, *index_columns})
    col_defs = ", ".join(f"{quote_identifier(c)} TEXT COLLATE NOCASE" for c in columns)
    db.execute(f"CREATE TABLE {TABLE} ({col_defs})")
    position = {c: i for i, c in enumerate(columns)}
    placeholders = ", ".join("?" for _ in range(len(columns) + 1))
    insert = f"INSERT INTO {TABLE} (rowid, {', '.join(map(quote_identifier, columns))}) VALUES ({placeholders})"

    def values(line_no: int, row: dict) -> list:
        out = [None] * len(columns)
        for c, v in row.items():
            out[position[c]] = v
        return [line_no, *out]

    db.executemany(insert, (values(n, r) for n, r in rows))
    for c in index_columns:
        db.execute(f"CREATE INDEX {quote_identifier('ix_' + c)} ON {TABLE} ({quote_identifier(c)})")
    db.commit()
    return db


# --------------------------------------------------------------------------------------------
# REGEXP for the backend's `field REGEXP 'pattern'`
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def compiled_regex(pattern: str):
    # The same engine pySigma validated the pattern with (RE2 under the default policy).
    # Flags come inline from the backend, as a (?i)/(?m)/(?s) prefix.
    return default_policy.regex_engine.compile(pattern)


def sql_regexp(pattern: str, value) -> bool:
    """SQLite calls `X REGEXP Y` as regexp(Y, X); false for a missing field.

    The fulltext column holds several values; a keyword regex is tested on each one.
    """
    if value is None:
        return False
    regex = compiled_regex(pattern)
    return any(regex.search(part) is not None for part in str(value).split(VALUE_SEPARATOR))


# --------------------------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------------------------


class ReferenceBackend(sqliteBackend):
    """The SQLite backend, with numeric comparisons (|gt, |lt, ...) read as numbers, and
    `null` read as Tocsin reads it.

    Our columns are TEXT, and SQLite compares a TEXT column with a number literal as text
    ('10' < '9'). The backend's own `numeric()` helper (which its correlations use) turns the
    column into a number, or NULL when it is not one.

    A Sigma `null` stands for an empty or absent field (../shared/reference's reading of the
    specification, and Tocsin's: rules/README.md); the backend writes `IS NULL`, which leaves
    out the empty text. That is a reading of the specification, not a matching detail, so
    the reference is told Tocsin's: events with empty values (the rule-derived events have
    many) would otherwise differ on every rule with a `Field: null` filter.
    """

    compare_op_expression = numeric("{field}") + " {operator} {value}"
    field_null_expression = "({field} IS NULL OR {field} = '')"


def make_backend() -> ReferenceBackend:
    # The only pipeline step renames fields to their case-exact columns (see column_name);
    # keyword searches go to FULLTEXT_COLUMN through the backend's fulltext_field option.
    rename = ProcessingItem(
        identifier="tocsin_reference_case_exact_columns",
        transformation=FieldFunctionTransformation(mapping={}, transform_func=column_name),
    )
    pipeline = ProcessingPipeline(name="tocsin reference columns", items=[rename])
    return ReferenceBackend(processing_pipeline=pipeline, fulltext_field=FULLTEXT_COLUMN)


def rule_files(dirs: list[Path]) -> list[Path]:
    files = []
    for d in dirs:
        files.extend(p for p in d.rglob("*") if p.suffix in (".yml", ".yaml") and p.is_file())
    return sorted(files)


def raw_documents(text: str) -> list[dict]:
    try:
        return [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
    except yaml.YAMLError:
        return []


def product_filter(product: str | None):
    """A test of a rule's logsource: its product is `product`, or anything when None."""

    def test(logsource) -> bool:
        if product is None:
            return True
        if isinstance(logsource, dict):
            return logsource.get("product") == product
        return getattr(logsource, "product", None) == product

    return test


def load_rules(files: list[Path], wanted) -> tuple[list[tuple[str, SigmaRule]], dict[str, str]]:
    """The detection rules whose logsource `wanted` accepts, as (id, rule), and parse errors
    by rule id.

    Correlation rules and filters are skipped. A rule id seen before is skipped (the first
    file in path order wins, as in Tocsin).
    """
    rules, errors, seen = [], {}, set()

    def remember(rule_id: str, path: Path) -> bool:
        if rule_id in seen:
            print(f"warning: duplicate rule id {rule_id} in {path}; skipped", file=sys.stderr)
            return False
        seen.add(rule_id)
        return True

    for path in files:
        text = path.read_text(encoding="utf-8")
        try:
            collection = SigmaCollection.from_yaml(text, collect_errors=True)
        except Exception as e:  # YAML syntax errors and the like: the whole file fails
            for doc in raw_documents(text) or [{}]:
                if "correlation" in doc or "filter" in doc:
                    continue
                if doc and not wanted(doc.get("logsource") or {}):
                    continue
                rule_id = str(doc.get("id") or path)
                if remember(rule_id, path):
                    errors[rule_id] = f"parse: {type(e).__name__}: {e}"
            continue
        for rule in collection.rules:
            if isinstance(rule, (SigmaCorrelationRule, SigmaFilter)):
                continue
            if not wanted(rule.logsource):
                continue
            rule_id = str(rule.id) if rule.id else str(path)
            if not remember(rule_id, path):
                continue
            if rule.errors:
                e = rule.errors[0]
                errors[rule_id] = f"parse: {type(e).__name__}: {e}"
            else:
                rules.append((rule_id, rule))
    return rules, errors


def convert(backend: ReferenceBackend, rule: SigmaRule) -> list[str]:
    """The backend's WHERE expressions for a rule (one per condition)."""
    prefix = f"SELECT * FROM {TABLE} WHERE "
    wheres = []
    for query in backend.convert_rule(rule):
        if not isinstance(query, str) or not query.startswith(prefix):
            raise ValueError(f"unexpected query shape: {str(query)[:200]}")
        wheres.append(query[len(prefix):])
    return wheres


# --------------------------------------------------------------------------------------------
# Running the queries
# --------------------------------------------------------------------------------------------

MISSING_COLUMN = re.compile(r"no such column: (.+)$")


def run_query(db: sqlite3.Connection, sql: str) -> list[int]:
    """Row ids matched by `sql`; a column no event has is added (all NULL) and it is retried."""
    for _ in range(1000):
        try:
            return [r[0] for r in db.execute(sql)]
        except sqlite3.OperationalError as e:
            missing = MISSING_COLUMN.search(str(e))
            if not missing:
                raise
            add_column(db, missing.group(1).strip("`"))
    raise RuntimeError("too many missing columns")


def matches_for(db: sqlite3.Connection, route: str, wheres: list[str]) -> list[int]:
    """Lines matching the rule: its logsource route AND any of its conditions.

    The route is ANDed around the backend's WHERE here, in SQL, rather than added by a
    pySigma pipeline: a route such as process_creation is an OR of ANDs (Sysmon channel and
    EventID 1, or Security and 4688), which AddConditionTransformation (one AND of field
    value lists) cannot express without admitting the cross pairs; and rules the profile
    does not cover are found before conversion. The backend's expression is kept verbatim.
    """
    lines = set()
    for where in wheres:
        lines.update(run_query(db, f"SELECT rowid FROM {TABLE} WHERE ({route}) AND ({where})"))
    return sorted(lines)


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rules", action="append", required=True, type=Path,
                   help="directory of Sigma rules (recursive); repeatable")
    p.add_argument("--events", required=True, type=Path, help="JSON lines, plain or gzip")
    p.add_argument("--output", required=True, type=Path, help="result JSON")
    p.add_argument("--profile", type=Path, default=DEFAULT_PROFILE,
                   help=f"Tocsin profile for routing and field fallbacks (default {DEFAULT_PROFILE})")
    p.add_argument("--product", default="windows",
                   help="only rules of this logsource product (default windows); 'any' for all")
    return p.parse_args(argv)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def error_kind(message: str) -> str:
    return message.split(":", 2)[1].strip() if message.startswith("parse:") else message.split(":", 1)[0]


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    profile = Profile(args.profile)

    files = rule_files(args.rules)
    rules, conversion_errors = load_rules(
        files, product_filter(None if args.product == "any" else args.product))
    rules_total = len(rules) + len(conversion_errors)
    log(f"{len(files)} files, {rules_total} rules of product {args.product}, "
        f"{len(conversion_errors)} parse errors")

    backend = make_backend()
    not_applicable, converted = [], []  # converted: (id, route, wheres)
    for rule_id, rule in rules:
        route = profile.route_sql(rule.logsource)
        if route is None:
            not_applicable.append(rule_id)
            continue
        try:
            converted.append((rule_id, route, convert(backend, rule)))
        except Exception as e:  # pySigma raises for what the backend does not support
            conversion_errors[rule_id] = f"{type(e).__name__}: {e}"
    log(f"{len(converted)} converted, {len(not_applicable)} not applicable, "
        f"{len(conversion_errors)} conversion errors ({time.monotonic() - started:.1f}s)")

    rows, skipped = read_events(args.events, profile)
    route_columns = sorted({column_name(str(f)) for table in profile.routes.values()
                            for alts in table.values() for alt in alts for f in alt})
    db = build_database(rows, route_columns)
    log(f"{len(rows)} events loaded, {skipped} lines skipped ({time.monotonic() - started:.1f}s)")

    matches, query_errors = {}, {}
    for i, (rule_id, route, wheres) in enumerate(converted, start=1):
        try:
            lines = matches_for(db, route, wheres)
        except Exception as e:
            query_errors[rule_id] = f"{type(e).__name__}: {e}"
            continue
        if lines:
            matches[rule_id] = lines
        if i % 500 == 0:
            log(f"  {i}/{len(converted)} rules run ({time.monotonic() - started:.1f}s)")

    result = {
        "pysigma_version": importlib.metadata.version("pysigma"),
        "backend_version": importlib.metadata.version("pysigma-backend-sqlite"),
        "rules_total": rules_total,
        "rules_converted": len(converted),
        "not_applicable": sorted(not_applicable),
        "conversion_errors": dict(sorted(conversion_errors.items())),
        "query_errors": dict(sorted(query_errors.items())),
        "matches": dict(sorted(matches.items())),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")

    kinds = Counter(error_kind(m) for m in conversion_errors.values())
    log(f"conversion errors by kind: {dict(kinds.most_common())}")
    log(f"query errors: {len(query_errors)}; rules with matches: {len(matches)}; "
        f"matches: {sum(map(len, matches.values()))}; {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
