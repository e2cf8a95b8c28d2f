#!/usr/bin/env bash
# Events/s and peak memory of `tocsin run` (release build, single process) over
# `tocsin gen --events N` with the rules in rules/. Repeatable: same seed, same bytes.
#   benches/run-throughput.sh [N]   (default 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-1000000}"
cargo build --release --locked -q
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
./target/release/tocsin gen --events "$n" --seed 1 --output "$work/events.jsonl"
ls -l "$work/events.jsonl" | awk '{printf "input: %.1f MB\n", $5/1e6}'
for i in 1 2 3; do
    /usr/bin/time -f "run $i: wall %e s, peak RSS %M KiB" \
        ./target/release/tocsin run --rules rules --input "$work/events.jsonl" --output "$work/warnings.jsonl" 2>&1 |
        grep -E "events/s|peak RSS"
done
echo "warnings: $(wc -l < "$work/warnings.jsonl") versions"
