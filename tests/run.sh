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

echo "== cargo fmt --check"
cargo fmt --all --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test"
cargo test --workspace --locked
