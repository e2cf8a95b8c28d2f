#!/usr/bin/env bash
# Through a real broker: one match worker's throughput and event-to-warning latency
# (benches/kafka.rs). Starts its own Tansu broker (the one tests/run.sh installs) with SQLite
# storage on a free loopback port, and stops it after.
#
#   benches/kafka.sh                                  # 200,000 events, 2,000 events/s
#   TOCSIN_BENCH_EVENTS=1000000 TOCSIN_BENCH_RATE=5000 benches/kafka.sh
#   TOCSIN_BENCH_STORAGE=memory://tansu/ benches/kafka.sh    # Tansu's in-memory engine
set -euo pipefail
cd "$(dirname "$0")/.."
tansu="${TOCSIN_TANSU:-${XDG_CACHE_HOME:-$HOME/.cache}/tocsin/tools/bin/tansu}"
if [ ! -x "$tansu" ]; then
    echo "benches/kafka.sh: no Tansu at $tansu; run tests/run.sh once to install it" >&2
    exit 1
fi
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
dir="$(mktemp -d -t tocsin-bench-broker.XXXXXX)"
(cd "$dir" && exec "$tansu" broker --silent \
    --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine "${TOCSIN_BENCH_STORAGE:-sqlite://tansu.db}") &
broker=$!
trap 'kill "$broker" 2>/dev/null; wait "$broker" 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    sleep 0.1
done
cargo build --release --locked -q
TOCSIN_KAFKA_BOOTSTRAP="127.0.0.1:$port" cargo bench -p tocsin-benches --bench kafka
