#!/usr/bin/env python3
"""Scaling curves from the last bench runs, as one SVG (benches/scaling.svg).

Reads criterion's estimates (target/criterion/GROUP/BENCH/new/{estimates,benchmark}.json) and
the figures the benches record themselves (target/criterion/tocsin-figures.jsonl: memory per
scale, the compiled rules' and keys' as live heap bytes counted by the bench's allocator,
indicators' as resident bytes; events/s per process count from benches/scaling.sh), and draws
throughput
against rules, indicators, live correlation keys, Sigma correlation groups and processes, and
memory against the same.

    python3 benches/scaling.py [--criterion target/criterion] [--output benches/scaling.svg]

Standard library only: the SVG is written by hand.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path


def throughput(criterion: Path, group: str, pattern: str) -> list[tuple[float, float]]:
    """(scale, elements per second) for every bench of `group` whose name matches `pattern`
    (a regex with one group: the scale)."""
    points = []
    base = criterion / group
    if not base.is_dir():
        return points
    for bench in sorted(base.iterdir()):
        meta, est = bench / "new" / "benchmark.json", bench / "new" / "estimates.json"
        if not (meta.is_file() and est.is_file()):
            continue
        info = json.loads(meta.read_text())
        m = re.fullmatch(pattern, info.get("function_id") or "")
        if not m:
            continue
        elements = (info.get("throughput") or {}).get("Elements")
        mean_ns = json.loads(est.read_text())["mean"]["point_estimate"]
        if elements:
            points.append((float(m.group(1)), elements / (mean_ns / 1e9)))
    return sorted(points)


def recorded(criterion: Path) -> dict[str, list[tuple[float, float]]]:
    """The latest value per (series, x) from tocsin-figures.jsonl."""
    series: dict[str, dict[float, float]] = {}
    path = criterion / "tocsin-figures.jsonl"
    if path.is_file():
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            series.setdefault(rec["series"], {})[float(rec["x"])] = float(rec["value"])
    return {k: sorted(v.items()) for k, v in series.items()}


def fmt(v: float) -> str:
    for unit, div in (("M", 1e6), ("k", 1e3)):
        if v >= div:
            return f"{v / div:.3g}{unit}"
    return f"{v:.3g}"


def panel(x0: float, y0: float, title: str, xlabel: str, ylabel: str,
          points: list[tuple[float, float]], log_x: bool, colour: str) -> list[str]:
    """One chart: a line with labelled points; y from zero."""
    w, h = 330.0, 190.0
    out = [f'<g transform="translate({x0},{y0})">',
           f'<text x="0" y="-12" font-size="13" font-weight="bold">{title}</text>',
           f'<rect x="0" y="0" width="{w}" height="{h}" fill="none" stroke="#999"/>']
    if not points:
        out.append(f'<text x="{w / 2}" y="{h / 2}" text-anchor="middle" fill="#a00" font-size="12">'
                   'no data: run the benches first</text></g>')
        return out
    xs = [math.log10(x) if log_x else x for x, _ in points]
    lo, hi = min(xs), max(xs)
    if hi == lo:
        lo, hi = lo - 1, hi + 1
    ymax = max(y for _, y in points) * 1.15
    sx = lambda v: 20 + (v - lo) / (hi - lo) * (w - 40)
    sy = lambda v: h - v / ymax * (h - 10)
    for i in range(5):
        yv = ymax * i / 4
        out.append(f'<line x1="0" x2="{w}" y1="{sy(yv):.1f}" y2="{sy(yv):.1f}" stroke="#eee"/>')
        out.append(f'<text x="-4" y="{sy(yv) + 4:.1f}" font-size="10" text-anchor="end">{fmt(yv)}</text>')
    path = " ".join(f"{'M' if i == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for i, (x, (_, y)) in enumerate(zip(xs, points)))
    out.append(f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
    for x, (raw_x, y) in zip(xs, points):
        out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3.5" fill="{colour}"/>')
        out.append(f'<text x="{sx(x):.1f}" y="{sy(y) - 7:.1f}" font-size="10" text-anchor="middle">{fmt(y)}</text>')
        out.append(f'<text x="{sx(x):.1f}" y="{h + 14}" font-size="10" text-anchor="middle">{fmt(raw_x)}</text>')
    out.append(f'<text x="{w / 2}" y="{h + 30}" font-size="11" text-anchor="middle">{xlabel}</text>')
    out.append(f'<text transform="translate(-42,{h / 2}) rotate(-90)" font-size="11" text-anchor="middle">{ylabel}</text>')
    out.append("</g>")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    repo = Path(__file__).resolve().parents[1]
    ap.add_argument("--criterion", type=Path, default=repo / "target" / "criterion")
    ap.add_argument("--output", type=Path, default=repo / "benches" / "scaling.svg")
    a = ap.parse_args()
    fig = recorded(a.criterion)
    mib = lambda pts: [(x, v / 2**20) for x, v in pts]
    panels = [
        ("Matching: SigmaHQ rules, real events", "rules (log)", "events/s",
         throughput(a.criterion, "sigmahq", r"match/(\d+)-rules"), True, "#c0392b"),
        ("Indicators over the gen workload", "indicators (log)", "events/s",
         throughput(a.criterion, "iocs", r"match/(\d+)-indicators"), True, "#c0392b"),
        ("Correlator: live keys", "live correlation keys (log)", "detections/s",
         throughput(a.criterion, "correlate", r"push/(\d+)-keys"), True, "#c0392b"),
        ("Sigma correlation: live groups", "live groups (log)", "detections/s",
         throughput(a.criterion, "correlate-sigma", r"push/(\d+)-groups"), True, "#c0392b"),
        ("tocsin run: processes on 2 cores", "processes", "events/s (all)",
         fig.get("run-events-per-s-by-processes", []), False, "#c0392b"),
        ("Memory: compiled rules (live heap, exact)", "rules (log)", "heap MiB",
         mib(fig.get("sigmahq-compiled-heap-bytes", [])), True, "#2c6e9e"),
        ("Memory: indicators", "indicators (log)", "resident MiB",
         mib(fig.get("iocs-resident-bytes", [])), True, "#2c6e9e"),
        ("Memory: live correlation keys (live heap)", "keys (log)", "heap MiB",
         mib(fig.get("correlate-heap-bytes", [])), True, "#2c6e9e"),
        ("Memory: Sigma correlation groups (live heap)", "groups of one detection (log)",
         "heap MiB", mib(fig.get("correlate-sigma-heap-bytes", [])), True, "#2c6e9e"),
    ]
    cols, pw, ph = 2, 420, 270
    rows = math.ceil(len(panels) / cols)
    width, height = cols * pw + 40, rows * ph + 70
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="DejaVu Sans, Arial, sans-serif">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           '<text x="20" y="28" font-size="16" font-weight="bold">Tocsin scaling '
           '(benches/RESULTS.md; one thread per process, 2 vCPU)</text>']
    for i, p in enumerate(panels):
        svg += panel(70 + (i % cols) * pw, 75 + (i // cols) * ph, *p)
    svg.append("</svg>")
    a.output.write_text("\n".join(svg) + "\n")
    print(f"scaling.py: wrote {a.output}")


if __name__ == "__main__":
    main()
