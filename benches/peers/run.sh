#!/usr/bin/env bash
# Side by side: Tocsin and other Sigma engines on the same events and the same rules.
#
#   benches/peers/run.sh [EVENTS_LIMIT]      # default: all 60,458 OTRF events; e.g. 2000 for a sample
#
# Per engine: wall time, user/sys time and peak RSS (/usr/bin/time -v), start-up time (the same
# command over a one-event input, so net events/s = events / (wall - start-up)), detections,
# distinct (rule, line) pairs and rules fired. Then agree.py compares the (rule, line) pairs of
# the engines that answer the same question, and chart.py draws the figures.
#
# Engines (ENGINES, space-separated; default: tocsin tocsin-x2 tocsin-any pysigma pysigma-any
# rsigma rsigma-sysmon chainsaw hayabusa):
#   tocsin        tocsin run, rules/profiles/sysmon.yaml (Channel + EventID routing, field fallbacks)
#   tocsin-any    tocsin run with a generated profile `any`: no logsource conditions, no field mapping
#   tocsin-calibrated  tocsin with --calibrate 5000: prefilters chosen by literal frequencies
#                 observed in the first 5,000 events (same matches as tocsin)
#   tocsin-frequencies tocsin with --frequencies: the same observation made once, before the
#                 timed runs, by `tocsin rules calibrate --events 5000`, and read at start
#                 (same matches as tocsin)
#   tocsin-x2     tocsin on both cores: two `tocsin run` processes at once, each over half of the
#                 events (two-workers.sh), as two workers of a consumer group share a topic's
#                 partitions; its detections are merged, untimed (same matches as tocsin)
#   rsigma-sysmon-x2  rsigma -p sysmon on both cores, the same way (same matches as rsigma-sysmon)
#   pysigma       tests/reference/sigma_sqlite_reference.py (pySigma + SQLite) with the sysmon profile
#   pysigma-any   the same with the `any` profile
#   rsigma        rsigma engine eval, no pipeline (logsource ignored)
#   rsigma-sysmon rsigma engine eval -p sysmon (EventID per category)
#   chainsaw      chainsaw hunt with ../shared/peers/chainsaw-flat-jsonl.yml, --num-threads PEER_THREADS
#   hayabusa      hayabusa dfir-timeline -J, --threads PEER_THREADS
# An engine whose binary (or Python) is missing is skipped and recorded as skipped.
#
# Environment (paths relative to the repository root unless absolute):
#   TOCSIN_BIN        default target/release/tocsin (not built here: build it first)
#   PEERS_CACHE       default ~/.cache/tocsin-peers (peer binaries in bin/, hayabusa's share/;
#                     prepared events are cached in events/)
#   TOCSIN_TEST_DATA  default ../shared/data (events/otrf, sigma/rules/windows)
#   PEERS_RULES       default $TOCSIN_TEST_DATA/sigma/rules/windows
#   CHAINSAW_MAPPING  default $TOCSIN_TEST_DATA/../peers/chainsaw-flat-jsonl.yml
#   TOCSIN_PYSIGMA_PYTHON  default ~/.cache/tocsin/pysigma-2.0.1-sqlite-2.1.1/bin/python
#   PEER_THREADS      threads for chainsaw and hayabusa (default: nproc = their own default)
#   REPEAT            timed runs per engine (default 1); summary.json keeps min and max
#   PEERS_OUT         output directory (default target/peers/<limit>-<UTC time>; target/peers/latest
#                     points at the newest)
#   PEERS_REFRESH=1   re-prepare the cached events file
#   PEERS_TIMES       the events this many times over, numbered on (default 1): on the 60,458
#                     events the fastest engines spend most of their wall time starting up;
#                     PEERS_TIMES=5 (302,290 events) measures their net rates
# Time on an idle machine: the load average is recorded in summary.json and a warning is printed
# when it is above 0.5 at the start.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
abs() { case "$1" in /*) realpath -m "$1" ;; *) realpath -m "$REPO/$1" ;; esac; }

LIMIT="${1:-all}"
if [ "$LIMIT" != all ] && ! [[ "$LIMIT" =~ ^[0-9]+$ ]]; then
    echo "usage: $0 [EVENTS_LIMIT]" >&2; exit 2
fi
TIMES="${PEERS_TIMES:-1}"
if ! [[ "$TIMES" =~ ^[1-9][0-9]*$ ]]; then
    echo "run.sh: PEERS_TIMES must be a positive number" >&2; exit 2
fi
# The input's name: the limit, and how many times over when more than once.
INPUT="$LIMIT"
[ "$TIMES" = 1 ] || INPUT="$LIMIT-x$TIMES"
TOCSIN_BIN="$(abs "${TOCSIN_BIN:-target/release/tocsin}")"
PEERS_CACHE="$(abs "${PEERS_CACHE:-$HOME/.cache/tocsin-peers}")"
DATA="$(abs "${TOCSIN_TEST_DATA:-../shared/data}")"
RULES="$(abs "${PEERS_RULES:-$DATA/sigma/rules/windows}")"
MAPPING="$(abs "${CHAINSAW_MAPPING:-$DATA/../peers/chainsaw-flat-jsonl.yml}")"
PYSIGMA="${TOCSIN_PYSIGMA_PYTHON:-${XDG_CACHE_HOME:-$HOME/.cache}/tocsin/pysigma-2.0.1-sqlite-2.1.1/bin/python}"
THREADS="${PEER_THREADS:-$(nproc)}"
REPEAT="${REPEAT:-1}"
ENGINES="${ENGINES:-tocsin tocsin-x2 tocsin-any pysigma pysigma-any rsigma rsigma-sysmon chainsaw hayabusa}"
B="$PEERS_CACHE/bin"
KNOWN=" tocsin tocsin-x2 rsigma-sysmon-x2 tocsin-any tocsin-calibrated tocsin-frequencies pysigma pysigma-any rsigma rsigma-sysmon chainsaw hayabusa "
for e in $ENGINES; do
    case "$KNOWN" in *" $e "*) ;; *) echo "unknown engine '$e' (known:$KNOWN)" >&2; exit 2 ;; esac
done
OUT="$(abs "${PEERS_OUT:-target/peers/$INPUT-$(date -u +%Y%m%dT%H%M%SZ)}")"

[ -d "$DATA/events/otrf" ] || { echo "no events under $DATA/events/otrf (set TOCSIN_TEST_DATA)" >&2; exit 1; }
[ -d "$RULES" ] || { echo "no rules directory $RULES" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time is needed (GNU time, for -v)" >&2; exit 1; }

mkdir -p "$OUT"/{startup,time,work} "$PEERS_CACHE/events"
if [ -z "${PEERS_OUT:-}" ]; then ln -sfn "$OUT" "$(dirname "$OUT")/latest"; fi
: > "$OUT/timings.tsv"
: > "$OUT/engines.tsv"
echo "== output: $OUT"

# ---- inputs, prepared once -------------------------------------------------------------------
EV="$PEERS_CACHE/events/otrf-lined-$INPUT.jsonl"
EV1="$PEERS_CACHE/events/otrf-lined-$INPUT.startup.jsonl"
if [ ! -s "$EV" ] || [ ! -s "$EV1" ] || [ -n "${PEERS_REFRESH:-}" ]; then
    echo "== preparing $EV"
    python3 "$HERE/prep.py" events "$EV" --limit "$LIMIT" --times "$TIMES" --startup "$EV1" "$DATA/events/otrf"
fi
EVENTS=$(wc -l < "$EV")
# The two workers' halves of both inputs, prepared once beside them.
case " $ENGINES " in *"-x2 "*)
    for input in "$EV" "$EV1"; do
        if [ ! -e "$input.half-a" ] || [ ! -e "$input.half-b" ] || [ "$input" -nt "$input.half-a" ]; then
            python3 "$HERE/prep.py" halves "$input" "$input.half-a" "$input.half-b"
        fi
    done ;;
esac
RULE_FILES=$(find "$RULES" -name '*.yml' | wc -l)
echo "== $EVENTS events ($EV), $RULE_FILES rule files ($RULES)"

# Tocsin reads profiles from a profiles/ folder of a rules path: one with the repository's
# sysmon profile and the generated `any` profile.
TR="$OUT/work/tocsin-rules"
mkdir -p "$TR/profiles"
cp "$REPO/rules/profiles/sysmon.yaml" "$TR/profiles/sysmon.yaml"
python3 "$HERE/prep.py" any-profile "$REPO/rules/profiles/sysmon.yaml" "$RULES" "$TR/profiles/any.yaml"

# The frequency table of `tocsin-frequencies`: the first 5,000 events, as --calibrate 5000
# observes them, saved once (not timed).
FREQUENCIES="$OUT/work/frequencies.json"
case " $ENGINES " in *" tocsin-frequencies "*)
    if [ -x "$TOCSIN_BIN" ]; then
        "$TOCSIN_BIN" rules calibrate --rules "$RULES" --rules "$TR" --profile sysmon \
            --input "$EV" --events 5000 --output "$FREQUENCIES" 2> "$OUT/work/calibrate.stderr" \
            || { echo "tocsin rules calibrate failed:" >&2; cat "$OUT/work/calibrate.stderr" >&2; exit 1; }
    fi ;;
esac

# ---- engines ---------------------------------------------------------------------------------
# engine_cmd ENGINE EVENTS OUTFILE: sets CMD (argv), CWD, STDOUT_IS_OUTPUT, THREADS_OF, NEEDS.
engine_cmd() {
    local e=$1 ev=$2 o=$3
    CWD="$OUT"; STDOUT_IS_OUTPUT=0; THREADS_OF=1
    case $e in
        tocsin|tocsin-any|tocsin-calibrated|tocsin-frequencies)
            local prof=sysmon; if [ "$e" = tocsin-any ]; then prof=any; fi
            NEEDS="$TOCSIN_BIN"
            CMD=("$TOCSIN_BIN" run --rules "$RULES" --rules "$TR" --profile "$prof"
                 --input "$ev" --output "${o%.out}.warnings.jsonl" --detections "$o")
            if [ "$e" = tocsin-calibrated ]; then CMD+=(--calibrate 5000); fi
            if [ "$e" = tocsin-frequencies ]; then CMD+=(--frequencies "$FREQUENCIES"); fi ;;
        tocsin-x2)
            NEEDS="$TOCSIN_BIN"; THREADS_OF=2
            CMD=("$HERE/two-workers.sh" "$o" "$ev.half-a" "$ev.half-b"
                 "$TOCSIN_BIN" run --rules "$RULES" --rules "$TR" --profile sysmon
                 --input "{input}" --detections "{out}" --output "{out}.warnings.jsonl") ;;
        rsigma-sysmon-x2)
            NEEDS="$B/rsigma"; THREADS_OF=2
            CMD=("$HERE/two-workers.sh" "$o" "$ev.half-a" "$ev.half-b"
                 "$B/rsigma" engine eval -r "$RULES" -e "@{input}" -p sysmon) ;;
        pysigma|pysigma-any)
            local prof=sysmon; if [ "$e" = pysigma-any ]; then prof=any; fi
            NEEDS="$PYSIGMA"
            CMD=("$PYSIGMA" "$REPO/tests/reference/sigma_sqlite_reference.py" --rules "$RULES"
                 --events "$ev" --output "$o" --profile "$TR/profiles/$prof.yaml") ;;
        rsigma|rsigma-sysmon)
            NEEDS="$B/rsigma"; STDOUT_IS_OUTPUT=1
            CMD=("$B/rsigma" engine eval -r "$RULES" -e "@$ev")
            if [ "$e" = rsigma-sysmon ]; then CMD+=(-p sysmon); fi ;;
        chainsaw)
            NEEDS="$B/chainsaw"; THREADS_OF=$THREADS
            CMD=("$B/chainsaw" --num-threads "$THREADS" hunt "$ev" -s "$RULES" --mapping "$MAPPING"
                 --extension jsonl --load-unknown --jsonl -o "$o") ;;
        hayabusa)
            NEEDS="$B/hayabusa"; THREADS_OF=$THREADS; CWD="$PEERS_CACHE/share/hayabusa"
            CMD=("$B/hayabusa" dfir-timeline -J -f "$ev" -r "$RULES" -c ./rules/config -t jsonl
                 -o "$o" -w -C -Q -q -K --threads "$THREADS") ;;
        *) echo "unknown engine $e" >&2; return 1 ;;
    esac
}

# available ENGINE: 0 if it can run; else prints why.
available() {
    case $1 in
        pysigma|pysigma-any)
            [ -x "$PYSIGMA" ] && "$PYSIGMA" -c 'import sigma.backends.sqlite' 2>/dev/null \
                || { echo "no pySigma+SQLite Python at $PYSIGMA (tests/run.sh installs it)"; return 1; } ;;
        hayabusa)
            [ -x "$NEEDS" ] || { echo "binary $NEEDS missing"; return 1; }
            [ -d "$PEERS_CACHE/share/hayabusa/rules/config" ] \
                || { echo "$PEERS_CACHE/share/hayabusa/rules/config missing"; return 1; } ;;
        chainsaw)
            [ -x "$NEEDS" ] || { echo "binary $NEEDS missing"; return 1; }
            [ -f "$MAPPING" ] || { echo "chainsaw mapping $MAPPING missing"; return 1; } ;;
        *) [ -x "$NEEDS" ] || { echo "binary $NEEDS missing"; return 1; } ;;
    esac
}

# timed ENGINE PHASE REP EVENTS OUTFILE LOGPREFIX: one run under /usr/bin/time -v.
timed() {
    local e=$1 phase=$2 rep=$3 ev=$4 o=$5 log=$6 rc=0 t0 t1 so
    engine_cmd "$e" "$ev" "$o"
    rm -f "$o"
    so="$log.stdout"; if [ "$STDOUT_IS_OUTPUT" = 1 ]; then so="$o"; fi
    t0=$(date +%s%N)
    (cd "$CWD" && exec /usr/bin/time -v -o "$OUT/time/$e.$phase.$rep.time" "${CMD[@]}") \
        > "$so" 2> "$log.stderr" || rc=$?
    t1=$(date +%s%N)
    printf '%s\t%s\t%s\t%s\t%s\n' "$e" "$phase" "$rep" "$rc" "$(( (t1 - t0) / 1000 ))" >> "$OUT/timings.tsv"
    awk -v e="$e" -v p="$phase" -v r="$rep" -v rc="$rc" -v ns="$((t1 - t0))" \
        'BEGIN { printf "  %-14s %-8s #%s rc=%s %7.2f s\n", e, p, r, rc, ns / 1e9 }'
}

# Check what can run; record the exact commands.
RUNNABLE=()
for e in $ENGINES; do
    engine_cmd "$e" "$EV" "$OUT/$e.out"
    if why=$(available "$e"); then
        RUNNABLE+=("$e")
        printf '%s\tok\t%s\t%s\t%s\n' "$e" "$THREADS_OF" "$CWD" "${CMD[*]}" >> "$OUT/engines.tsv"
    else
        echo "== skipping $e: $why"
        printf '%s\tskipped: %s\t%s\t%s\t%s\n' "$e" "$why" "$THREADS_OF" "$CWD" "${CMD[*]}" >> "$OUT/engines.tsv"
    fi
done

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
if awk -v l="${LOAD_START%% *}" 'BEGIN { exit !(l > 0.5) }'; then
    echo "== WARNING: load average $LOAD_START: something else is running; timings will be noisy"
fi

for rep in $(seq 1 "$REPEAT"); do
    echo "== run $rep of $REPEAT"
    for e in "${RUNNABLE[@]}"; do
        timed "$e" startup "$rep" "$EV1" "$OUT/startup/$e.out" "$OUT/startup/$e"
        timed "$e" full "$rep" "$EV" "$OUT/$e.out" "$OUT/$e"
    done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- untimed extras: event identity for rsigma, which rules each engine loads -------------------
echo "== identity runs and rule checks (not timed)"
for e in "${RUNNABLE[@]}"; do
    case $e in
        rsigma-sysmon-x2)
            # The workers' detections as one file, then the identity run of each half (the
            # `_line` numbers are the whole input's).
            cat "$OUT/$e.out.a.stdout" "$OUT/$e.out.b.stdout" > "$OUT/$e.out" 2> /dev/null \
                || echo "  $e: merging the halves' detections failed"
            for half in a b; do
                engine_cmd rsigma-sysmon "$EV.half-$half" "$OUT/$e.ids.out"
                "${CMD[@]}" --include-event 2> "$OUT/work/$e.ids.$half.stderr" \
                    || echo "  $e identity run of half $half failed (rc $?)"
            done > "$OUT/$e.ids.out" ;;
        rsigma|rsigma-sysmon)
            # The timed run writes no event; this one adds it (--include-event) for the _line.
            engine_cmd "$e" "$EV" "$OUT/$e.ids.out"
            "${CMD[@]}" --include-event > "$OUT/$e.ids.out" 2> "$OUT/work/$e.ids.stderr" \
                || echo "  $e identity run failed (rc $?)" ;;
        tocsin|tocsin-x2|tocsin-any|tocsin-calibrated|tocsin-frequencies)
            if [ "$e" = tocsin-x2 ]; then
                # The halves' detections as one file, the second half's lines numbered on.
                python3 "$HERE/prep.py" merge-halves "$EV.half-a" "$OUT/$e.out" "$OUT/$e.out.a" \
                    "$OUT/$e.out.b" || echo "  $e: merging the halves' detections failed"
            fi
            prof=sysmon; if [ "$e" = tocsin-any ]; then prof=any; fi
            "$TOCSIN_BIN" rules check --format json --profile "$prof" "$RULES" "$TR" \
                > "$OUT/work/$e.rules-check.json" 2> /dev/null || true ;;
        chainsaw)
            "$B/chainsaw" lint --kind sigma "$RULES" > /dev/null 2> "$OUT/work/chainsaw.lint.stderr" || true ;;
    esac
done

{
    echo "tocsin: $("$TOCSIN_BIN" --version 2>&1 | head -n1 || true)"
    for p in rsigma chainsaw; do
        [ -x "$B/$p" ] && echo "$p: $("$B/$p" --version 2>&1 | head -n1 || true)"
    done
    [ -x "$B/hayabusa" ] && echo "hayabusa: $("$B/hayabusa" help 2>&1 | sed 's/\x1b\[[0-9;]*m//g' | grep -m1 -o 'Hayabusa v[^ ]*' || true)"
    [ -x "$PYSIGMA" ] && echo "pysigma: $("$PYSIGMA" -c 'import importlib.metadata as m; print(m.version("pysigma"), "sqlite backend", m.version("pysigma-backend-sqlite"))' 2>/dev/null || true)"
} > "$OUT/versions.txt" 2>/dev/null || true

python3 "$HERE/summarize.py" "$OUT" --events-file "$EV" --startup-file "$EV1" --rules "$RULES" \
    --limit "$LIMIT" --times "$TIMES" --repeat "$REPEAT" --threads "$THREADS" --load-start "$LOAD_START" --load-end "$LOAD_END" \
    --mapping "$MAPPING" --hayabusa-config "$PEERS_CACHE/share/hayabusa/rules/config"
python3 "$HERE/agree.py" "$OUT"
python3 "$HERE/chart.py" "$OUT/summary.json" -o "$OUT/peers.svg"
echo "== done: $OUT/summary.json, $OUT/agreement.json, $OUT/peers.svg"
