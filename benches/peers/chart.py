#!/usr/bin/env python3
"""Draw a benches/peers summary.json as an SVG bar chart (hand-written SVG, stdlib only).

    chart.py [SUMMARY_JSON] [-o OUT.svg]
        default SUMMARY_JSON: target/peers/latest/summary.json; default OUT: benches/peers/peers.svg

Left: net events/s per engine (events / (wall - start-up)), log scale. Right: peak RSS (MiB).
Engines that were skipped or have no net rate are listed under the chart.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from xml.sax.saxutils import escape

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

ROW, TOP, LEFT = 30, 92, 150
RATE_W, GAP, RSS_W = 430, 70, 220
WIDTH = LEFT + RATE_W + GAP + RSS_W + 40


def fmt_rate(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:.2f} M/s"
    if v >= 1e3:
        return f"{v / 1e3:.1f} k/s"
    return f"{v:.0f}/s"


def text(x, y, s, size=12, anchor="start", weight="normal", fill="#222"):
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f'font-weight="{weight}" fill="{fill}">{escape(str(s))}</text>')


def chart(summary: dict) -> str:
    ok = [e for e in summary["engines"] if e.get("status") == "ok"]
    left_out = [e for e in summary["engines"] if e not in ok]
    ok.sort(key=lambda e: -(e.get("net_events_per_s") or 0))
    height = TOP + ROW * max(len(ok), 1) + 60 + 16 * len(left_out)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif">',
           f'<rect width="{WIDTH}" height="{height}" fill="white"/>']
    times = summary.get("times", 1)
    over = f" ({summary['events'] // times:,} {times} times over)" if times > 1 else ""
    title = (f"Sigma engines on {summary['events']:,} OTRF events{over}, "
             f"{summary.get('rule_files', '?'):,} SigmaHQ rules (rules/windows)")
    out.append(text(12, 22, title, 15, weight="bold"))
    sub = (f"net events/s = events / (wall - start-up on one event); best of {summary.get('repeat', 1)}; "
           f"{summary.get('host', {}).get('nproc', '?')} vCPU; {summary.get('created', '')}")
    out.append(text(12, 40, sub, 11, fill="#555"))
    load = summary.get("host", {}).get("loadavg_start", "")
    # Two different cautions: too few events (start-up dominates the wall time), or a busy
    # host at the start (every engine's timings are noisier than usual).
    if summary["events"] < 20000:
        out.append(text(12, 56, f"flow test only: {summary['events']:,} events, load average {load} "
                        "- start-up dominates and net rates are noise", 11, fill="#c0392b"))
    elif load and float(load.split()[0]) > 0.5:
        out.append(text(12, 56, f"load average {load} at the start: something else was running, "
                        "timings are noisier than usual", 11, fill="#c0392b"))

    if ok:
        rates = [e["net_events_per_s"] for e in ok if e.get("net_events_per_s")] or [1]
        lo = 10 ** math.floor(math.log10(min(rates)))
        hi = 10 ** math.ceil(math.log10(max(rates) * 1.0001))
        span = math.log10(hi) - math.log10(lo)

        def rx(v):
            return LEFT + RATE_W * (math.log10(v) - math.log10(lo)) / span

        rss_max = max(e.get("max_rss_kb", 0) for e in ok) / 1024
        step = next(s for s in (10, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000) if rss_max / s <= 5)
        rss_hi = step * math.ceil(rss_max / step) or step
        x0 = LEFT + RATE_W + GAP

        def mx(mib):
            return x0 + RSS_W * mib / rss_hi

        bottom = TOP + ROW * len(ok)
        out.append(text(LEFT, TOP - 14, "net events/s (log scale)", 12, weight="bold"))
        out.append(text(x0, TOP - 14, "peak RSS (MiB)", 12, weight="bold"))
        decade = lo
        while decade <= hi * 1.0001:
            x = rx(decade)
            out.append(f'<line x1="{x:.1f}" y1="{TOP - 6}" x2="{x:.1f}" y2="{bottom}" stroke="#ddd"/>')
            tick = next(f"{decade / d:.0f}{u}" for d, u in ((1e6, "M"), (1e3, "k"), (1, "")) if decade >= d)
            out.append(text(x, bottom + 14, tick, 10, "middle", fill="#666"))
            decade *= 10
        t = 0
        while t <= rss_hi:
            x = mx(t)
            out.append(f'<line x1="{x:.1f}" y1="{TOP - 6}" x2="{x:.1f}" y2="{bottom}" stroke="#ddd"/>')
            out.append(text(x, bottom + 14, t, 10, "middle", fill="#666"))
            t += step
        for i, e in enumerate(ok):
            y = TOP + ROW * i
            tocsin = e["engine"].startswith("tocsin")
            color = "#c0392b" if tocsin else "#5d7fa3"
            unit = "proc" if e["engine"].endswith("-x2") else "thr"  # two processes, see run.sh
            label = f"{e['engine']}" + (f" ({e['threads']} {unit})" if e.get("threads", 1) > 1 else "")
            out.append(text(LEFT - 8, y + 18, label, 12, "end", "bold" if tocsin else "normal"))
            if e.get("net_events_per_s"):
                w = max(rx(e["net_events_per_s"]) - LEFT, 1)
                out.append(f'<rect x="{LEFT}" y="{y + 5}" width="{w:.1f}" height="{ROW - 10}" fill="{color}"/>')
                out.append(text(LEFT + w + 4, y + 19, fmt_rate(e["net_events_per_s"]), 11))
            else:
                out.append(text(LEFT + 4, y + 19, "n/a: start-up time >= wall time (too few events to tell)",
                                11, fill="#777"))
            mib = e.get("max_rss_kb", 0) / 1024
            out.append(f'<rect x="{x0}" y="{y + 5}" width="{max(mx(mib) - x0, 1):.1f}" height="{ROW - 10}" '
                       f'fill="{color}" opacity="0.6"/>')
            out.append(text(mx(mib) + 4, y + 19, f"{mib:.0f}", 11))
        y = bottom + 34
    else:
        y = TOP + 20
    for e in left_out:
        out.append(text(12, y, f"{e['engine']}: {e.get('status')}", 11, fill="#777"))
        y += 16
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("summary", nargs="?", type=Path, default=REPO / "target/peers/latest/summary.json")
    ap.add_argument("-o", "--output", type=Path, default=HERE / "peers.svg")
    a = ap.parse_args()
    svg = chart(json.loads(a.summary.read_text()))
    a.output.write_text(svg, encoding="utf-8")
    print(f"chart.py: wrote {a.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
