#!/usr/bin/env bash
# Two processes of one engine at once, each over its own half of the events: what the engine
# does with both cores of a machine, as two workers of a consumer group share a topic's
# partitions (`tocsin run` and `rsigma engine eval` each match on one thread). run.sh times
# this as the engines `tocsin-x2` and `rsigma-sysmon-x2`, and merges the two outputs
# afterwards, untimed.
#
#   two-workers.sh OUT HALF_A HALF_B COMMAND...
#
# In COMMAND, `{input}` stands for the worker's half and `{out}` for its output prefix,
# OUT.a or OUT.b. Each worker's standard output goes to OUT.a.stdout or OUT.b.stdout, and
# its peak RSS to OUT.a.rss or OUT.b.rss (GNU time: a `/usr/bin/time` around this script
# reports only the larger one's); the exit status is the first failing worker's, else 0.
set -euo pipefail
out=$1 a=$2 b=$3
shift 3
command=("$@")
# A failed worker must leave no output of an earlier run to be merged as its own.
rm -f "$out.a" "$out.b" "$out".a.* "$out".b.*
worker() { # half (a or b), its input
    local argv=() arg
    for arg in "${command[@]}"; do
        arg=${arg//\{input\}/$2}
        argv+=("${arg//\{out\}/$out.$1}")
    done
    /usr/bin/time -f "two-workers: peak RSS %M KB" -o "$out.$1.rss" "${argv[@]}" \
        > "$out.$1.stdout" 2> "$out.$1.stderr"
}
worker a "$a" &
first=$!
worker b "$b" &
second=$!
rc=0
wait "$first" || rc=$?
wait "$second" || { status=$?; [ "$rc" != 0 ] || rc=$status; }
# The two workers' reports, in order, where run.sh and summarize.py look for one.
cat "$out.a.stderr" "$out.b.stderr" "$out.a.rss" "$out.b.rss" >&2 2> /dev/null || true
exit "$rc"
