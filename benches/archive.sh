#!/usr/bin/env bash
# The archive's figures (benches/RESULTS.md, #9), release build, over `tocsin gen`:
# - write: `tocsin run --archive` against `tocsin run` alone, events/s, and the archive's
#   size against the input's;
# - query: a grouped query (events by sector and member state) over every archived event;
# - hunt: `tocsin hunt` with 10^5 new indicators (plus the campaign's three, so that it
#   finds something) over every archived event.
#
#   benches/archive.sh            # 10,000,000 events (about 5.6 GB of JSON, 25 GB free disk)
#   benches/archive.sh 1000000
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-10000000}"
cargo build --release --locked -q
bin="$PWD/target/release/tocsin"
work="$(mktemp -d -t tocsin-bench-archive.XXXXXX)"
trap 'rm -rf "$work"' EXIT
"$bin" gen --events "$n" --seed 3 --output "$work/events.jsonl"
input_mb=$(($(stat -c %s "$work/events.jsonl") / 1000000))
echo "input: $n background events (+ campaign), $input_mb MB"

timed() { /usr/bin/time -f "  wall %e s, peak RSS %M KiB" "$@"; }

echo "== run, no archive"
timed "$bin" run --rules rules --input "$work/events.jsonl" --output /dev/null 2>&1 |
    grep -E "events/s|wall"
echo "== run --archive"
timed "$bin" run --rules rules --input "$work/events.jsonl" --output /dev/null \
    --archive "$work/archive" 2>&1 | grep -E "events/s|archived|wall"
archive_mb=$(($(du -sb "$work/archive" | cut -f1) / 1000000))
echo "archive: $archive_mb MB ($((100 * archive_mb / input_mb)) % of the input)"

echo "== grouped query over every archived event (3 runs)"
sql="SELECT sector, member_state, count(*) AS events, count(DISTINCT host) AS hosts
     FROM events GROUP BY sector, member_state ORDER BY events DESC"
for i in 1 2 3; do
    timed "$bin" query --archive "$work/archive" "$sql" 2>&1 >"$work/query.txt" | grep wall
done
head -6 "$work/query.txt"

echo "== hunt with 100,003 indicators"
python3 - "$work/iocs.txt" <<'PY'
import hashlib, sys
with open(sys.argv[1], "w") as f:
    f.write("#! feed: bench-hunt\n#! tlp: GREEN\n")
    for i in range(50_000):
        f.write(f"domain h{i}.hunt-bench.example\n")
        f.write(f"sha256 {hashlib.sha256(str(i).encode()).hexdigest()}\n")
    # The campaign's, so that the hunt has detections to correlate.
    f.write("domain invoice-viewer.example\nipv4 203.0.113.47\n")
    f.write("sha256 9f2c4b7e1d3a5c6b8e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f\n")
PY
for i in 1 2; do
    timed "$bin" hunt --archive "$work/archive" --iocs "$work/iocs.txt" \
        --detections "$work/hunted.jsonl" --output /dev/null 2>&1 |
        grep -E "loaded|archived events|wall"
done
echo "hunt detections: $(wc -l <"$work/hunted.jsonl")"
