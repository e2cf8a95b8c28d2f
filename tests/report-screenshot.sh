#!/usr/bin/env bash
# Render `tocsin report --format html` in headless Chromium and save a screenshot, to look at
# what a coordinator sees (charts, tables, the TLP label). Not part of tests/run.sh: it needs
# the Debian package `chromium` (installed here with apt-get when missing and run as root).
#
#   tests/report-screenshot.sh [OUT.png] [report flags...]
#   tests/report-screenshot.sh /tmp/report.png --audience operational
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-report.png}"
shift || true
if ! command -v chromium >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get install -y -q chromium >/dev/null
    else
        echo "tests/report-screenshot.sh: install the Debian package chromium first" >&2
        exit 1
    fi
fi
cargo build -q --locked
bin="$PWD/target/debug/tocsin"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$bin" gen --events 20000 --seed 7 --output "$work/events.jsonl"
"$bin" run -q --rules rules --input "$work/events.jsonl" --output /dev/null --archive "$work/archive"
"$bin" report --archive "$work/archive" --format html --output "$work/report.html" "$@"
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1200,2600 \
    --screenshot="$work/report.png" "file://$work/report.html" 2>/dev/null
cp "$work/report.png" "$out"
echo "tests/report-screenshot.sh: $out"
