#!/usr/bin/env bash
# Throughput against processes: `tocsin run` (one matching thread per process) over
# `tocsin gen --events N`, once with one process over all events, once with two processes
# over two halves at the same time, as two workers of a consumer group share a topic's
# partitions. Records both figures for benches/scaling.py and redraws benches/scaling.svg.
#   benches/scaling.sh [N]   (default 1000000)
# Run the criterion benches first (cargo bench -p tocsin-benches) for the other curves.
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-1000000}"
cargo build --release --locked -q
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
bin=./target/release/tocsin
"$bin" gen --events "$n" --seed 1 --output "$work/all.jsonl"
total=$(wc -l < "$work/all.jsonl")
split -n l/2 "$work/all.jsonl" "$work/half."
figures=target/criterion/tocsin-figures.jsonl
mkdir -p target/criterion

run() { # input, tag
    "$bin" run --rules rules --input "$1" --output "$work/$2.warnings" 2> "$work/$2.log"
}
best_of_three() { # command...: the shortest wall time of three runs, in seconds
    for _ in 1 2 3; do
        local start end
        start=$(date +%s.%N)
        "$@"
        end=$(date +%s.%N)
        awk -v a="$start" -v b="$end" 'BEGIN { print b - a }'
    done | sort -g | head -1
}
one() { run "$work/all.jsonl" one; }
two() { # both at once; fails when either fails
    run "$work/half.aa" a & local first=$!
    run "$work/half.ab" b & local second=$!
    local rc=0
    wait "$first" || rc=$?
    wait "$second" || rc=$?
    return "$rc"
}

wall1=$(best_of_three one)
wall2=$(best_of_three two)
for p in 1 2; do
    wall=$([ "$p" = 1 ] && echo "$wall1" || echo "$wall2")
    rate=$(awk -v n="$total" -v w="$wall" 'BEGIN { printf "%d", n / w }')
    echo "$p process(es): $total events in ${wall} s: $rate events/s"
    echo "{\"series\": \"run-events-per-s-by-processes\", \"x\": $p, \"value\": $rate}" >> "$figures"
done
# The answer: both halves together must find the one process's detections.
detections() { grep -ho '[0-9]* detections' "$@" | awk '{s += $1} END {print s}'; }
d1=$(detections "$work/one.log"); d2=$(detections "$work/a.log" "$work/b.log")
echo "detections: $d1 with one process, $d2 with two"
[ "$d1" = "$d2" ] || { echo "scaling.sh: the two processes found $d2 detections, one found $d1" >&2; exit 1; }
python3 benches/scaling.py
