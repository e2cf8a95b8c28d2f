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

echo "== cargo fmt --check"
cargo fmt --all --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test"
cargo test --workspace --locked
