#!/usr/bin/env python3
"""Collect a benches/peers run directory into summary.json and print a table (stdlib only).

    summarize.py RUN_DIR --events-file EV --startup-file EV1 --rules DIR [--limit N] [--times T] ...

Reads engines.tsv (status, threads, command), timings.tsv (wall clock per run, measured around
the process), time/<engine>.<phase>.<rep>.time (`/usr/bin/time -v`: user, system, peak RSS),
each engine's stderr/stdout (its own counters) and outputs (detections; via peerout.py).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import sys
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, str(Path(__file__).resolve().parent))
import peerout  # noqa: E402


def parse_time_v(path: Path) -> dict:
    out = {}
    if not path.exists():
        return out
    for line in path.read_text(errors="replace").splitlines():
        key, _, value = line.strip().rpartition(": ")
        if key == "User time (seconds)":
            out["user_s"] = float(value)
        elif key == "System time (seconds)":
            out["sys_s"] = float(value)
        elif key == "Maximum resident set size (kbytes)":
            out["max_rss_kb"] = int(value)
        elif key == "Exit status":
            out["exit_status"] = int(value)
        elif key == "Percent of CPU this job got":
            out["cpu_percent"] = int(value.rstrip("%") or 0)
    return out


def read_text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def engine_counters(engine: str, run_dir: Path) -> dict:
    """What the engine says about its own run (stderr/stdout of the last full run)."""
    ansi = re.compile(r"\x1b\[[0-9;]*m")
    err = ansi.sub("", read_text(run_dir / f"{engine}.stderr"))
    out = ansi.sub("", read_text(run_dir / f"{engine}.stdout"))
    c: dict = {}
    if engine.startswith("tocsin"):
        m = re.search(r"loaded (\d+) Sigma rules .*?(\d+) set aside", err)
        if m:
            c["rules_loaded"], c["rules_set_aside"] = int(m.group(1)), int(m.group(2))
        # One report per process (`tocsin-x2` runs two at once): their sums, and the
        # longer of their times.
        reports = re.findall(r"tocsin: (\d+) events \(.*?\) in ([\d.]+) s \((\d+) events/s\): (\d+) detections", err)
        if reports:
            c["events_reported"] = sum(int(r[0]) for r in reports)
            c["self_reported_s"] = max(float(r[1]) for r in reports)
            if len(reports) == 1:
                c["self_reported_events_per_s"] = int(reports[0][2])
            else:
                c["self_reported_events_per_s"] = round(c["events_reported"] / c["self_reported_s"]) \
                    if c["self_reported_s"] > 0 else None
    elif engine.startswith("rsigma"):
        m = re.search(r"Loaded (\d+) rules", err)
        if m:
            c["rules_loaded"] = int(m.group(1))
        # One report per process (`rsigma-sysmon-x2` runs two at once): their sums.
        reports = re.findall(r"Processed (\d+) events, (\d+) matches", err)
        if reports:
            c["events_reported"] = sum(int(r[0]) for r in reports)
            c["matches_reported"] = sum(int(r[1]) for r in reports)
    elif engine == "chainsaw":
        m = re.search(r"Loaded (\d+) detection rules", err)
        if m:
            c["rules_loaded"] = int(m.group(1))
        m = re.search(r"(\d+) Detections found on (\d+) documents", err)
        if m:
            c["matches_reported"], c["documents_with_hits"] = int(m.group(1)), int(m.group(2))
    elif engine == "hayabusa":
        text = out + "\n" + err
        m = re.search(r"Total events:\s*([\d,]+)", text)
        if m:
            c["events_reported"] = int(m.group(1).replace(",", ""))
        m = re.search(r"Events with hits / Total events:\s*([\d,]+)\s*/\s*([\d,]+)", text)
        if m:
            c["events_with_hits_reported"] = int(m.group(1).replace(",", ""))
            c["events_reported"] = int(m.group(2).replace(",", ""))
        m = re.search(r"Total \| Unique detections:\s*([\d,]+)\s*\|\s*([\d,]+)", text)
        if m:
            c["matches_reported"] = int(m.group(1).replace(",", ""))
        m = re.search(r"Total detection rules:\s*([\d,]+)", text)
        if m:
            c["rules_loaded"] = int(m.group(1).replace(",", ""))
    elif engine.startswith("pysigma"):
        # Stage stamps are cumulative seconds since the script started.
        m = re.search(r"(\d+) converted, (\d+) not applicable, (\d+) conversion errors \(([\d.]+)s\)", err)
        if m:
            c["rules_loaded"] = int(m.group(1))
            c["rules_not_applicable"], c["conversion_errors"] = int(m.group(2)), int(m.group(3))
            c["convert_s"] = float(m.group(4))
        m = re.search(r"(\d+) events loaded, \d+ lines skipped \(([\d.]+)s\)", err)
        if m:
            c["events_reported"] = int(m.group(1))
            if "convert_s" in c:
                c["load_s"] = round(float(m.group(2)) - c["convert_s"], 3)
            loaded_at = float(m.group(2))
            m2 = re.search(r"matches: \d+; ([\d.]+)s\s*$", err.strip())
            if m2:
                c["query_s"] = round(float(m2.group(1)) - loaded_at, 3)
    return c


def count_timed_events(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for line in f if b'"@timestamp"' in line)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--events-file", type=Path, required=True)
    ap.add_argument("--startup-file", type=Path)
    ap.add_argument("--rules", type=Path, required=True)
    ap.add_argument("--limit", default="all")
    ap.add_argument("--times", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--load-start", default="")
    ap.add_argument("--load-end", default="")
    ap.add_argument("--mapping", default="")
    ap.add_argument("--hayabusa-config", default="")
    a = ap.parse_args()
    run = a.run_dir

    events = sum(1 for _ in open(a.events_file, "rb"))
    timings: dict[tuple[str, str], list[dict]] = {}
    for line in read_text(run / "timings.tsv").splitlines():
        engine, phase, rep, rc, wall_us = line.split("\t")
        t = parse_time_v(run / "time" / f"{engine}.{phase}.{rep}.time")
        t.update(rep=int(rep), rc=int(rc), wall_s=int(wall_us) / 1e6)
        timings.setdefault((engine, phase), []).append(t)

    engines = []
    for line in read_text(run / "engines.tsv").splitlines():
        name, status, threads, cwd, command = line.split("\t", 4)
        e: dict = {"engine": name, "status": status, "question": peerout.question(name),
                   "threads": int(threads), "cwd": cwd, "command": command}
        full, start = timings.get((name, "full"), []), timings.get((name, "startup"), [])
        if status == "ok" and full:
            best = min(full, key=lambda t: t["wall_s"])
            e.update(
                events=events,
                wall_s=round(best["wall_s"], 3),
                wall_s_max=round(max(t["wall_s"] for t in full), 3),
                user_s=best.get("user_s"),
                sys_s=best.get("sys_s"),
                user_s_min=min(t.get("user_s", 0) for t in full),
                user_s_max=max(t.get("user_s", 0) for t in full),
                max_rss_kb=max(t.get("max_rss_kb", 0) for t in full),
                max_rss_kb_min=min(t.get("max_rss_kb", 0) for t in full),
                rc=[t["rc"] for t in full],
                runs=full,
            )
            if start:
                e.update(
                    startup_s=round(min(t["wall_s"] for t in start), 3),
                    startup_s_max=round(max(t["wall_s"] for t in start), 3),
                    startup_user_s=min(t.get("user_s", 0) for t in start),
                    startup_rss_kb=max(t.get("max_rss_kb", 0) for t in start),
                    startup_runs=start,
                )
            e["events_per_s_wall"] = round(events / e["wall_s"]) if e["wall_s"] > 0 else None
            net = e["wall_s"] - e.get("startup_s", 0)
            e["net_s"] = round(net, 3)
            e["net_events_per_s"] = round(events / net) if net > 0.01 else None
            e["net_events_per_s_range"] = [
                round(events / (e["wall_s_max"] - e.get("startup_s", 0)))
                if e["wall_s_max"] - e.get("startup_s", 0) > 0.01 else None,
                round(events / (e["wall_s"] - e.get("startup_s_max", 0)))
                if e["wall_s"] - e.get("startup_s_max", 0) > 0.01 else None,
            ]
            e["matches"] = peerout.read_detection_count(run, name)
            got = peerout.read_pairs(run, name)
            if got is not None:
                e["pairs"] = len(got[1])
                e["distinct_rules"] = len({r for r, _ in got[1]})
                e["events_with_hits"] = len({line for _, line in got[1]})
                if got[0] != e["matches"]:
                    e.setdefault("notes", []).append(
                        f"identity run wrote {got[0]} detections, timed run {e['matches']}")
            e.update(engine_counters(name, run))
            if name == "chainsaw":
                e["events_considered"] = count_timed_events(a.events_file)
                e.setdefault("notes", []).append(
                    "chainsaw skips events without @timestamp (events_considered)")
            if name.endswith("-x2"):
                # /usr/bin/time reports the larger process's peak; two-workers.sh each one's.
                peaks = [int(k) for k in re.findall(r"two-workers: peak RSS (\d+) KB", read_text(run / f"{name}.stderr"))]
                both = len(peaks) == 2
                if both:
                    e["max_rss_kb_per_process"] = peaks
                    e["max_rss_kb"] = sum(peaks)
                e.setdefault("notes", []).append(
                    "two processes at once; peak RSS is the sum of the two processes' peaks" if both
                    else "two processes at once, a worker's peak RSS missing: peak RSS is the larger one's")
            if name.startswith("rsigma"):
                e.setdefault("notes", []).append(
                    "timed without --include-event; (rule, line) pairs from a separate untimed run with it")
            if any(t["rc"] != 0 for t in full):
                e.setdefault("notes", []).append("non-zero exit status: see the stderr file")
        engines.append(e)

    summary = {
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": {"nproc": os.cpu_count(), "platform": platform.platform(),
                 "loadavg_start": a.load_start, "loadavg_end": a.load_end},
        "limit": a.limit,
        "times": a.times,
        "events": events,
        "events_file": str(a.events_file),
        "startup_file": str(a.startup_file) if a.startup_file else None,
        "rules_dir": str(a.rules),
        "rule_files": sum(1 for _ in a.rules.rglob("*.yml")),
        "repeat": a.repeat,
        "peer_threads": a.threads,
        "chainsaw_mapping": a.mapping,
        "hayabusa_config": a.hayabusa_config,
        "versions": read_text(run / "versions.txt").splitlines(),
        "engines": engines,
    }
    (run / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")

    print(f"\n{events} events, {summary['rule_files']} rule files, repeat {a.repeat}, "
          f"load {a.load_start} -> {a.load_end}")
    hdr = ("engine", "thr", "wall s", "start s", "net ev/s", "user s", "peak RSS MB",
           "detections", "pairs", "rules")
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    for e in engines:
        if e["status"] != "ok":
            print(f"| {e['engine']} | {e['status']} |" + " |" * (len(hdr) - 2))
            continue
        wall = f"{e['wall_s']:.2f}" + (f"-{e['wall_s_max']:.2f}" if a.repeat > 1 else "")
        cells = (e["engine"], e["threads"], wall, f"{e.get('startup_s', 0):.2f}",
                 f"{e['net_events_per_s']:,}" if e.get("net_events_per_s") else "-",
                 f"{e.get('user_s', 0):.2f}", f"{e.get('max_rss_kb', 0) / 1024:.0f}",
                 e.get("matches"), e.get("pairs", "-"), e.get("distinct_rules", "-"))
        print("| " + " | ".join(str(c) for c in cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
