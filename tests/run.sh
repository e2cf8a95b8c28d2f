#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this and nothing else):
# formatting, lints, and every unit, property and integration test of the workspace.
#
# Test data: tests that use the real SigmaHQ rules and event logs read them through
# TOCSIN_TEST_DATA; it is set here when ../shared/data exists beside the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${TOCSIN_TEST_DATA:-}" ] && [ -d ../shared/data ]; then
    TOCSIN_TEST_DATA="$(cd ../shared/data && pwd)"
    export TOCSIN_TEST_DATA
fi
echo "tests/run.sh: TOCSIN_TEST_DATA=${TOCSIN_TEST_DATA:-<unset: tests that need it say so and skip>}"

# The reference Sigma implementation for tests/reference.rs (pySigma with its SQLite
# backend, pinned), installed once into a cache outside the clone.
if [ -n "${TOCSIN_TEST_DATA:-}" ] && [ -z "${TOCSIN_PYSIGMA_PYTHON:-}" ]; then
    venv="${XDG_CACHE_HOME:-$HOME/.cache}/tocsin/pysigma-2.0.1-sqlite-2.1.1"
    if ! "$venv/bin/python" -c 'import sigma.backends.sqlite' 2>/dev/null; then
        echo "== installing pySigma into $venv"
        rm -rf "$venv"
        if ! { python3 -m venv "$venv" && "$venv/bin/pip" install -q 'pysigma==2.0.1' 'pysigma-backend-sqlite==2.1.1'; }; then
            echo "tests/run.sh: could not install pySigma; the reference comparison will say it is skipped"
        fi
    fi
    if "$venv/bin/python" -c 'import sigma.backends.sqlite' 2>/dev/null; then
        export TOCSIN_PYSIGMA_PYTHON="$venv/bin/python"
    fi
fi

# The OASIS STIX 2.1 validator, for the test that validates rendered warnings.
if [ -z "${TOCSIN_STIX_VALIDATOR_PYTHON:-}" ]; then
    venv="${XDG_CACHE_HOME:-$HOME/.cache}/tocsin/stix2-validator-3.3"
    if ! "$venv/bin/python" -c 'import stix2validator' 2>/dev/null; then
        echo "== installing stix2-validator into $venv"
        rm -rf "$venv"
        if ! { python3 -m venv "$venv" && "$venv/bin/pip" install -q 'stix2-validator==3.3.2'; }; then
            echo "tests/run.sh: could not install stix2-validator; the STIX validation test will say it is skipped"
        fi
    fi
    if "$venv/bin/python" -c 'import stix2validator' 2>/dev/null; then
        export TOCSIN_STIX_VALIDATOR_PYTHON="$venv/bin/python"
    fi
fi

# The Kafka-compatible test broker (Tansu, Apache-2.0), installed once into a cache outside
# the clone and started on a free loopback port for this run only. Storage is SQLite in a
# temporary directory, not `memory://`: Tansu 0.6.0's memory (dynostore) engine answers a
# fetch from an offset inside a record batch with the *next* batch, so a consumer resuming
# from a committed offset mid-batch silently skips the rest of that batch. The SQLite engine
# stores records one by one and resumes exactly.
# Tests that need a broker read its address from TOCSIN_KAFKA_BOOTSTRAP, and tests that start
# their own (e.g. durable storage across a restart) find the binary in TOCSIN_TANSU.
if [ -z "${TOCSIN_KAFKA_BOOTSTRAP:-}" ]; then
    tools="${XDG_CACHE_HOME:-$HOME/.cache}/tocsin/tools"
    tansu="$tools/bin/tansu"
    if [ ! -x "$tansu" ]; then
        echo "== installing tansu 0.6.0 into $tools (once; 10-20 minutes on 2 cores)"
        cargo install tansu --version 0.6.0 --locked --features dynostore,libsql --root "$tools"
    fi
    export TOCSIN_TANSU="$tansu"
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    broker_log="$(mktemp -t tocsin-tansu.XXXXXX.log)"
    broker_dir="$(mktemp -d -t tocsin-tansu.XXXXXX)"
    # Tansu reads `sqlite://NAME` relative to its working directory.
    (cd "$broker_dir" && exec "$tansu" broker --silent \
        --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" \
        --storage-engine "sqlite://tansu.db" >"$broker_log" 2>&1) &
    broker_pid=$!
    trap 'kill "$broker_pid" 2>/dev/null; wait "$broker_pid" 2>/dev/null || true; rm -rf "$broker_dir"' EXIT
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
        if ! kill -0 "$broker_pid" 2>/dev/null; then
            echo "tests/run.sh: the test broker exited; its log:"; cat "$broker_log"; exit 1
        fi
        sleep 0.1
    done
    export TOCSIN_KAFKA_BOOTSTRAP="127.0.0.1:$port"
    echo "== test broker: tansu on $TOCSIN_KAFKA_BOOTSTRAP (pid $broker_pid, log $broker_log)"
fi

echo "== cargo fmt --check"
cargo fmt --all --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test"
cargo test --workspace --locked

# The deployment material, offline: kustomize renders, Kubernetes schemas, yamllint, PromQL
# (installs its pinned Python tools once into ~/.cache/tocsin/venv-deploy).
echo "== deploy/validate.sh"
TOCSIN_BIN="$PWD/target/debug/tocsin" deploy/validate.sh
