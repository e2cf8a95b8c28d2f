#!/usr/bin/env bash
# Offline validation of the deployment material in deploy/: no cluster, no image, no cargo.
#
#   deploy/validate.sh            (from any directory)
#
# - `kubectl kustomize` renders every overlay (kubectl's built-in kustomize);
# - every rendered resource passes the Kubernetes OpenAPI schemas of the pinned versions
#   (kubernetes-validate, strict: unknown fields fail); the custom resources (KEDA's
#   ScaledObject and TriggerAuthentication, the Prometheus operator's PrometheusRule and
#   ServiceMonitor), which kubernetes-validate only warns about, are checked against the
#   subsets in deploy/schemas/ instead, and a kind with no schema at all fails;
# - consistency: references inside each overlay, security context, probes, resources,
#   autoscaler bounds equal to the topic partitions, grace period above the shutdown deadline;
# - yamllint (deploy/.yamllint) over deploy/ and over the rendered manifests;
# - the Grafana dashboard parses as JSON; every PromQL expression of the alerts and the
#   dashboard parses and names only metrics the binary registers; every alert's runbook_url
#   is a heading of deploy/README.md;
# - if a built binary is there (target/release/tocsin, or $TOCSIN_BIN), `tocsin config check`
#   on the configuration and `tocsin rules test` on the site rules; skipped otherwise.
#
# The Python tools are installed once, pinned (deploy/requirements-validate.txt), into a venv
# at ${XDG_CACHE_HOME:-~/.cache}/tocsin/venv-deploy; it is rebuilt when that file changes.
# One line per check; the exit status is 1 if any check failed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
venv="${XDG_CACHE_HOME:-$HOME/.cache}/tocsin/venv-deploy"
requirements="$here/requirements-validate.txt"
# The oldest Kubernetes these manifests are meant for, and the newest kubernetes-validate knows.
k8s_versions=(1.30.0 1.37.0)
overlays=(dev prod prod-hpa)

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0

# check NAME COMMAND...: run it; print "ok" or "FAIL" with NAME (and the command's last line
# on success, everything it said on failure). `set -e` does not apply inside a command run
# as a condition, so the functions below return their failures explicitly.
check() {
    local name="$1"
    shift
    if "$@" >"$tmp/out" 2>&1; then
        local last
        last="$(tail -n 1 "$tmp/out")"
        printf 'ok    %s%s\n' "$name" "${last:+: $last}"
        passed=$((passed + 1))
    else
        printf 'FAIL  %s\n' "$name"
        sed 's/^/      /' "$tmp/out"
        failed=$((failed + 1))
    fi
}

skip() {
    printf 'skip  %s\n' "$1"
}

venv_ready() {
    local stamp
    stamp="$(sha256sum "$requirements" | cut -d' ' -f1)"
    if [[ -x "$venv/bin/python" && "$(cat "$venv/.requirements" 2>/dev/null)" == "$stamp" ]]; then
        echo "cached at $venv"
        return 0
    fi
    python3 -m venv --clear "$venv" || return
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" || return
    echo "$stamp" >"$venv/.requirements"
    echo "installed into $venv"
}

render() {
    kubectl kustomize "$here/k8s/overlays/$1" >"$tmp/$1.yaml" || { rm -f "$tmp/$1.yaml"; return 1; }
    echo "$(grep -c '^kind:' "$tmp/$1.yaml") resources"
}

yamllint_rendered() {
    # The rendered files are kustomize's formatting: the same rules, less the line length
    # (the dashboard JSON and long descriptions are embedded as they are).
    "$venv/bin/yamllint" --strict \
        -d "{extends: $here/.yamllint, rules: {line-length: disable}}" "$@" || return
    echo "$# files"
}

# A binary built from this checkout, if any: the configuration and the site rules as the
# workers will load them.
tocsin_checks() {
    local bin="$1"
    "$bin" config check "$here/k8s/base/tocsin.toml" || return
    "$bin" rules test "$repo/rules" "$here/k8s/base/site-rules" >"$tmp/rules-test" || {
        cat "$tmp/rules-test"
        return 1
    }
    tail -n 1 "$tmp/rules-test"
}

check "kubectl present" kubectl version --client
check "python venv with pinned tools" venv_ready
if [[ ! -x "$venv/bin/python" ]]; then
    printf 'FAIL  cannot continue without the venv\n'
    exit 1
fi

rendered=()
for o in "${overlays[@]}"; do
    check "kustomize render $o" render "$o"
    [[ -s "$tmp/$o.yaml" ]] && rendered+=("$tmp/$o.yaml")
done

k_args=()
for v in "${k8s_versions[@]}"; do k_args+=(-k "$v"); done
for o in "${overlays[@]}"; do
    if [[ -s "$tmp/$o.yaml" ]]; then
        check "schema $o (Kubernetes ${k8s_versions[*]}, strict; CRDs against deploy/schemas)" \
            "$venv/bin/python" "$here/validate.py" schema "${k_args[@]}" \
            --schemas "$here/schemas" "$tmp/$o.yaml"
    fi
done
if ((${#rendered[@]} > 0)); then
    check "consistency of the rendered overlays" \
        "$venv/bin/python" "$here/validate.py" consistency "${rendered[@]}"
    check "yamllint rendered overlays" yamllint_rendered "${rendered[@]}"
fi

check "yamllint deploy/" "$venv/bin/yamllint" --strict -c "$here/.yamllint" "$here"
check "dashboard JSON parses" python3 -m json.tool "$here/monitoring/grafana-dashboard.json" /dev/null
check "PromQL, metric names and runbook anchors" \
    "$venv/bin/python" "$here/validate.py" monitoring \
    --metrics-source "$repo/crates/tocsin/src/metrics.rs" --readme "$here/README.md" \
    "$here/monitoring/prometheus-rules.yaml" "$here/monitoring/grafana-dashboard.json"
check "validate.sh syntax" bash -n "$here/validate.sh"

bin="${TOCSIN_BIN:-$repo/target/release/tocsin}"
if [[ -x "$bin" ]]; then
    check "tocsin config check and rules test ($bin)" tocsin_checks "$bin"
else
    skip "tocsin config check and rules test (no built binary at $bin; set TOCSIN_BIN)"
fi

echo "validate: $passed passed, $failed failed"
((failed == 0))
