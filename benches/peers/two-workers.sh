#!/usr/bin/env bash
# Two `tocsin run` processes at once, each over its own half of the events: what Tocsin
# does with both cores of a machine, as two workers of a consumer group share a topic's
# partitions (`tocsin run` matches on one thread). run.sh times this as the engine
# `tocsin-x2`; it merges the two detection files afterwards, untimed.
#
#   two-workers.sh OUT HALF_A HALF_B TOCSIN_BIN run ARGS...
#
# Each process writes OUT.a or OUT.b (detections) and its warnings beside them, and its
# peak RSS (GNU time: a `/usr/bin/time` around this script reports only the larger one's);
# the exit status is the first failing process's, else 0.
set -euo pipefail
out=$1 a=$2 b=$3
shift 3
command=("$@")
worker() { # half (a or b), its input
    /usr/bin/time -f "two-workers: peak RSS %M KB" -o "$out.$1.rss" \
        "${command[@]}" --input "$2" --detections "$out.$1" --output "$out.$1.warnings.jsonl"
}
worker a "$a" 2> "$out.a.stderr" &
first=$!
worker b "$b" 2> "$out.b.stderr" &
second=$!
rc=0
wait "$first" || rc=$?
wait "$second" || { status=$?; [ "$rc" != 0 ] || rc=$status; }
# The two reports, in order, where run.sh and summarize.py look for one.
cat "$out.a.stderr" "$out.b.stderr" "$out.a.rss" "$out.b.rss" >&2 2> /dev/null || true
exit "$rc"
