#!/usr/bin/env python3
"""Offline checks of the deployment material; deploy/validate.sh runs them in its venv.

    validate.py schema -k VERSION [-k VERSION]... --schemas DIR RENDERED.yaml...
        Every resource against the Kubernetes OpenAPI schemas (kubernetes-validate, strict:
        unknown fields are errors). Kinds it has no schema for (the CRDs: ScaledObject,
        TriggerAuthentication, PrometheusRule, ServiceMonitor) are checked against the
        hand-written subsets in DIR, whose metadata and HPA behavior refer to the same
        Kubernetes definitions. A kind with no schema anywhere is an error, never skipped.

    validate.py consistency RENDERED.yaml...
        What a schema cannot see: references between the objects of one overlay, the
        security context and probes every worker must have, autoscaler bounds equal to the
        partitions the topics Job creates, a grace period above the shutdown deadline.

    validate.py monitoring --metrics-source metrics.rs --readme README.md RULES DASHBOARD
        Every PromQL expression of the alerts and the dashboard parses, and names only
        metrics the binary registers (read from metrics.rs) or `up`; every alert has a
        severity, a summary, a description and a runbook_url whose anchor is a heading of
        the README.

Each subcommand prints its findings, one per line, and exits 1 if there is any.
"""

import argparse
import json
import re
import sys
import tomllib

import yaml


def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def kind_name(doc):
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


# --- schema ---------------------------------------------------------------------------

def cmd_schema(args):
    import jsonschema
    import kubernetes_validate.utils as kv
    from referencing import Registry, Resource

    problems = []
    counts = {}
    resources = 0
    for version in args.kubernetes_version:
        defs = kv.schema_contents(
            f"kubernetes-json-schema/v{resolve_version(kv, version)}-local-strict/_definitions.json",
            version)
        registry = Resource.from_contents(defs) @ Registry()
        for path in args.files:
            for doc in load_docs(path):
                resources += 1
                where = f"{path}: {kind_name(doc)} (Kubernetes {version})"
                try:
                    kv.validate(doc, version, strict=True)
                    counts["kubernetes"] = counts.get("kubernetes", 0) + 1
                    continue
                except kv.ValidationError as e:
                    problems.append(f"{where}: {'.'.join(map(str, e.path))}: {e.message}")
                    continue
                except kv.SchemaNotFoundError:
                    pass
                group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", doc["apiVersion"])
                schema_path = f"{args.schemas}/{doc['kind'].lower()}-{group_version}.json"
                try:
                    with open(schema_path) as f:
                        schema = json.load(f)
                except FileNotFoundError:
                    problems.append(f"{where}: no schema for {doc['apiVersion']} {doc['kind']} "
                                    f"(neither Kubernetes' nor {schema_path})")
                    continue
                validator = jsonschema.Draft202012Validator(schema, registry=registry)
                errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
                for e in errors:
                    problems.append(f"{where}: {'.'.join(map(str, e.path))}: {e.message}")
                if not errors:
                    counts["custom"] = counts.get("custom", 0) + 1
    for p in problems:
        print(p)
    versions = len(args.kubernetes_version)
    print(f"{resources // versions} resources x {versions} Kubernetes versions: "
          f"{counts.get('kubernetes', 0)} valid by Kubernetes' schemas, "
          f"{counts.get('custom', 0)} by deploy/schemas; {len(problems)} problems")
    return 1 if problems else 0


def resolve_version(kv, desired):
    """The schema directory kubernetes-validate uses for `desired` (latest not newer)."""
    mm = kv.major_minor(desired)
    candidates = [v for v in kv.all_versions()
                  if tuple(map(int, kv.major_minor(v).split("."))) <= tuple(map(int, mm.split(".")))]
    if not candidates:
        raise SystemExit(f"kubernetes-validate has no schemas for Kubernetes {desired}")
    return candidates[-1]


# --- consistency ----------------------------------------------------------------------

def pod_spec(doc):
    if doc["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
        return doc["spec"]["template"]["spec"], doc["spec"]["template"]["metadata"].get("labels", {})
    return None, None


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def cmd_consistency(args):
    problems = []
    for path in args.files:
        docs = load_docs(path)
        by_kind = {}
        for d in docs:
            by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
        configmaps = by_kind.get("ConfigMap", {})
        workloads = [d for d in docs if pod_spec(d)[0] is not None]
        pods = [(d, *pod_spec(d)) for d in workloads]

        def problem(msg):
            problems.append(f"{path}: {msg}")

        # The configuration the workers read, with the overlay's variables applied.
        config_cm = next((c for n, c in configmaps.items() if n.startswith("tocsin-config")), None)
        env_cm = next((c for n, c in configmaps.items() if n.startswith("tocsin-env")), None)
        config = tomllib.loads(config_cm["data"]["tocsin.toml"]) if config_cm else {}
        env = env_cm.get("data", {}) if env_cm else {}
        deadline = int(env.get("TOCSIN_WORKER_SHUTDOWN_DEADLINE_S",
                               config.get("worker", {}).get("shutdown_deadline_s", 30)))
        match_group = env.get("TOCSIN_MATCH_GROUP", config.get("match", {}).get("group", "tocsin-match"))
        events = env.get("TOCSIN_TOPICS_EVENTS")
        events = events.split(",") if events else config.get("topics", {}).get("events", ["tocsin.events"])
        if not config_cm:
            problem("no tocsin-config ConfigMap")

        # Partitions the topics Job creates.
        partitions = None
        for job in by_kind.get("Job", {}).values():
            for a in job["spec"]["template"]["spec"]["containers"][0].get("args", []):
                if a.startswith("--partitions="):
                    partitions = int(a.split("=", 1)[1])
        if partitions is None:
            problem("the topics Job sets no --partitions")

        for d, spec, labels in pods:
            name = kind_name(d)
            if spec.get("automountServiceAccountToken") is not False:
                problem(f"{name}: automountServiceAccountToken is not false")
            psc = spec.get("securityContext", {})
            if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
                problem(f"{name}: pod seccompProfile is not RuntimeDefault")
            if psc.get("runAsNonRoot") is not True:
                problem(f"{name}: pod runAsNonRoot is not true")
            volumes = {v["name"]: v for v in spec.get("volumes", [])}
            for v in volumes.values():
                cm = v.get("configMap", {}).get("name")
                if cm and cm not in configmaps:
                    problem(f"{name}: volume {v['name']} names ConfigMap {cm}, not in this overlay")
            for c in spec.get("containers", []):
                where = f"{name} container {c['name']}"
                sc = c.get("securityContext", {})
                for key, want in [("runAsNonRoot", True), ("readOnlyRootFilesystem", True),
                                  ("allowPrivilegeEscalation", False)]:
                    if sc.get(key) is not want:
                        problem(f"{where}: securityContext.{key} is not {str(want).lower()}")
                if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                    problem(f"{where}: capabilities do not drop ALL")
                res = c.get("resources", {})
                for kind in ("requests", "limits"):
                    for r in ("cpu", "memory"):
                        if r not in res.get(kind, {}):
                            problem(f"{where}: no {kind}.{r}")
                for e in c.get("envFrom", []):
                    cm = e.get("configMapRef", {}).get("name")
                    if cm and cm not in configmaps:
                        problem(f"{where}: envFrom names ConfigMap {cm}, not in this overlay")
                for m in c.get("volumeMounts", []):
                    vol = volumes.get(m["name"])
                    if vol is None:
                        problem(f"{where}: mount {m['name']} has no volume")
                    elif vol.get("configMap", {}).get("name") == "tocsin-site-rules" and "subPath" in m:
                        problem(f"{where}: the site rules are mounted with subPath (no live updates)")
                if d["kind"] == "Deployment":
                    ports = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
                    if "metrics" not in ports:
                        problem(f"{where}: no port named metrics")
                    for probe, want in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")]:
                        got = c.get(probe, {}).get("httpGet", {})
                        if got.get("path") != want or got.get("port") not in ("metrics", ports.get("metrics")):
                            problem(f"{where}: {probe} is not GET {want} on the metrics port")
            if d["kind"] == "Deployment":
                grace = spec.get("terminationGracePeriodSeconds", 30)
                if grace <= deadline:
                    problem(f"{name}: terminationGracePeriodSeconds {grace} is not above "
                            f"worker.shutdown_deadline_s {deadline}")

        if "tocsin-site-rules" not in configmaps:
            problem("no ConfigMap named exactly tocsin-site-rules (it must keep a stable name)")

        # Selectors that must find pods.
        for kind in ("Service", "PodDisruptionBudget", "NetworkPolicy"):
            for n, d in by_kind.get(kind, {}).items():
                if kind == "Service":
                    sel = d["spec"].get("selector")
                elif kind == "PodDisruptionBudget":
                    sel = d["spec"]["selector"].get("matchLabels")
                else:
                    sel = d["spec"]["podSelector"].get("matchLabels")
                if not any(selects(sel, labels) for _, _, labels in pods):
                    problem(f"{kind}/{n}: its selector {sel} matches no pod template")

        # Autoscalers: the target exists, owns its replica count, and stops at the partitions.
        scalers = [(d, d["spec"]["scaleTargetRef"]["name"], d["spec"].get("maxReplicaCount"))
                   for d in by_kind.get("ScaledObject", {}).values()]
        scalers += [(d, d["spec"]["scaleTargetRef"]["name"], d["spec"].get("maxReplicas"))
                    for d in by_kind.get("HorizontalPodAutoscaler", {}).values()]
        for d, target, most in scalers:
            dep = by_kind.get("Deployment", {}).get(target)
            if dep is None:
                problem(f"{kind_name(d)}: scales Deployment/{target}, not in this overlay")
                continue
            if "replicas" in dep["spec"]:
                problem(f"{kind_name(d)}: Deployment/{target} still sets spec.replicas "
                        "(each apply would reset the autoscaler's count)")
            if partitions is not None and most != partitions:
                problem(f"{kind_name(d)}: at most {most} replicas, but the topics are made with "
                        f"{partitions} partitions")
        for d in by_kind.get("ScaledObject", {}).values():
            for t in d["spec"]["triggers"]:
                if t["type"] != "kafka":
                    continue
                md = t["metadata"]
                if md.get("consumerGroup") != match_group:
                    problem(f"{kind_name(d)}: consumerGroup {md.get('consumerGroup')} is not "
                            f"match.group {match_group}")
                if md.get("topic") not in events:
                    problem(f"{kind_name(d)}: topic {md.get('topic')} is not one of topics.events {events}")
                bootstrap = env.get("TOCSIN_KAFKA_BOOTSTRAP", config.get("kafka", {}).get("bootstrap"))
                if md.get("bootstrapServers") != bootstrap:
                    problem(f"{kind_name(d)}: bootstrapServers {md.get('bootstrapServers')} is not "
                            f"the workers' {bootstrap}")
                auth = t.get("authenticationRef", {}).get("name")
                if auth and auth not in by_kind.get("TriggerAuthentication", {}):
                    problem(f"{kind_name(d)}: authenticationRef {auth} is not in this overlay")
    for p in problems:
        print(p)
    print(f"{len(args.files)} overlays; {len(problems)} problems")
    return 1 if problems else 0


# --- monitoring -----------------------------------------------------------------------

GRAFANA_VARIABLES = [("$__rate_interval", "5m"), ("$__interval", "1m"), ("$__range", "1h"),
                     ("${namespace}", "ns"), ("$namespace", "ns")]
OTHER_METRICS = {"up"}


def registered_metrics(metrics_rs):
    text = open(metrics_rs).read()
    names = set(re.findall(r'"(tocsin_[a-z0-9_]+)"', text))
    histograms = set(re.findall(r'HistogramOpts::new\(\s*"(tocsin_[a-z0-9_]+)"', text))
    for h in histograms:
        names |= {h + "_bucket", h + "_sum", h + "_count"}
    return names


def github_anchors(readme):
    anchors, seen = set(), {}
    in_code = False
    for line in open(readme):
        if line.startswith("```"):
            in_code = not in_code
        m = None if in_code else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def check_expr(expr, allowed, where, problems):
    import promql_parser

    try:
        ast = promql_parser.parse(expr)
    except Exception as e:  # the parser raises ValueError with the reason
        problems.append(f"{where}: PromQL does not parse: {e}")
        return
    names = []

    def visit(node):
        if isinstance(node, promql_parser.VectorSelector):
            names.append(node.name)

    promql_parser.walk(ast, visit)
    for n in names:
        if n is None:
            problems.append(f"{where}: a selector without a metric name")
        elif n not in allowed and n not in OTHER_METRICS:
            problems.append(f"{where}: metric {n} is not one the binary registers")
    # Belt and braces: any tocsin_ word in the text, whatever the parser made of it.
    for n in re.findall(r"\btocsin_[a-z0-9_]+", expr):
        if n not in allowed:
            problems.append(f"{where}: {n} is not a registered metric")


def cmd_monitoring(args):
    problems = []
    allowed = registered_metrics(args.metrics_source)
    anchors = github_anchors(args.readme)
    alerts = 0
    for doc in load_docs(args.rules):
        for group in doc["spec"]["groups"]:
            for rule in group["rules"]:
                name = rule.get("alert") or rule.get("record")
                where = f"{args.rules}: {name}"
                check_expr(str(rule["expr"]), allowed, where, problems)
                if "alert" not in rule:
                    continue
                alerts += 1
                if rule.get("labels", {}).get("severity") not in ("critical", "warning", "info"):
                    problems.append(f"{where}: severity is not critical, warning or info")
                ann = rule.get("annotations", {})
                for key in ("summary", "description", "runbook_url"):
                    if not ann.get(key):
                        problems.append(f"{where}: no {key}")
                url = ann.get("runbook_url", "")
                anchor = url.partition("#")[2]
                if "deploy/README.md#" not in url or anchor not in anchors:
                    problems.append(f"{where}: runbook_url {url!r} is not a heading of {args.readme}")
                elif anchor != name.lower():
                    problems.append(f"{where}: runbook anchor #{anchor} is not #{name.lower()}")

    try:
        with open(args.dashboard) as f:
            dash = json.load(f)
    except json.JSONDecodeError as e:
        problems.append(f"{args.dashboard}: not JSON: {e}")
        dash = {}
    if not isinstance(dash.get("schemaVersion"), int) or not dash.get("uid") or not dash.get("title"):
        problems.append(f"{args.dashboard}: no schemaVersion, uid or title")
    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    if variables.get("datasource", {}).get("type") != "datasource" or \
            variables["datasource"].get("query") != "prometheus":
        problems.append(f"{args.dashboard}: no Prometheus data source variable named datasource")
    ids, targets = set(), 0
    panels = list(dash.get("panels", []))
    for p in panels:
        panels.extend(p.get("panels", []))
        where = f"{args.dashboard}: panel {p.get('id')} ({p.get('title')})"
        if p.get("id") in ids:
            problems.append(f"{where}: duplicate id")
        ids.add(p.get("id"))
        if p.get("type") == "row":
            continue
        if p.get("datasource", {}).get("uid") != "${datasource}":
            problems.append(f"{where}: data source is not ${{datasource}}")
        if not p.get("targets"):
            problems.append(f"{where}: no query")
        for t in p.get("targets", []):
            targets += 1
            expr = t.get("expr", "")
            for var, value in GRAFANA_VARIABLES:
                expr = expr.replace(var, value)
            if "$" in expr:
                problems.append(f"{where}: unknown variable in {t.get('expr')!r}")
                continue
            check_expr(expr, allowed, f"{where} query {t.get('refId')}", problems)

    for p in problems:
        print(p)
    print(f"{alerts} alerts, {targets} dashboard queries over {len(allowed)} registered series names; "
          f"{len(problems)} problems")
    return 1 if problems else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("schema")
    s.add_argument("-k", "--kubernetes-version", action="append", required=True)
    s.add_argument("--schemas", required=True)
    s.add_argument("files", nargs="+")
    c = sub.add_parser("consistency")
    c.add_argument("files", nargs="+")
    m = sub.add_parser("monitoring")
    m.add_argument("--metrics-source", required=True)
    m.add_argument("--readme", required=True)
    m.add_argument("rules")
    m.add_argument("dashboard")
    args = ap.parse_args()
    return {"schema": cmd_schema, "consistency": cmd_consistency, "monitoring": cmd_monitoring}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
