"""What the deployment files say, read once for the deploy tests: manifests, PromQL, tritonserver args.

PromQL is parsed with promql-parser (the Rust parser of the promql-parser crate, which follows
Prometheus' grammar); metric names come from its syntax tree, so a query that does not parse fails.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

promql = pytest.importorskip("promql_parser", reason="promql-parser is in the dev extra")

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "k8s"
ADAPTER_VALUES = DEPLOY / "prometheus-adapter" / "values.yaml"
RULES = DEPLOY / "prometheus" / "rules.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "perception-serving.json"

# Series Prometheus itself writes for every scrape target (not Triton's)
PROMETHEUS_SERIES = frozenset({"up"})
# Labels Prometheus attaches to a target's series: `instance`/`job` always, `namespace`/`pod` from
# Kubernetes service discovery (what prometheus-adapter maps to the pod resource)
TARGET_LABELS = frozenset({"instance", "job", "namespace", "pod"})


def yaml_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def manifests() -> list[tuple[Path, dict]]:
    """Every Kubernetes object under deploy/k8s (the kustomization file included)."""
    return [(path, doc) for path in sorted(K8S.glob("*.yaml")) for doc in yaml_docs(path)]


def kind_of(kind: str) -> dict:
    (doc,) = [d for _, d in manifests() if d["kind"] == kind]
    return doc


# --- PromQL -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Query:
    where: str  # file and item, for messages
    expr: str


def _children(node) -> list:
    if isinstance(node, promql.MatrixSelector):
        return [node.vector_selector]
    if isinstance(node, promql.Call):
        return list(node.args)
    if isinstance(node, promql.BinaryExpr):
        return [node.lhs, node.rhs]
    if isinstance(node, promql.AggregateExpr):
        return [node.expr] + ([node.param] if node.param is not None else [])
    if isinstance(node, promql.ParenExpr | promql.UnaryExpr | promql.SubqueryExpr):
        return [node.expr]
    return []


def _walk(node):
    yield node
    for child in _children(node):
        yield from _walk(child)


def metric_names(expr: str) -> set[str]:
    """Names of the series an expression selects (``name{...}`` and ``{__name__="name"}``)."""
    names = set()
    for node in _walk(promql.parse(expr)):
        if isinstance(node, promql.VectorSelector):
            if node.name:
                names.add(node.name)
            names.update(m.value for m in node.matchers.matchers if m.name == "__name__")
    return names


def grouping_labels(expr: str) -> set[str]:
    """Labels named in ``by (...)`` of the expression's aggregations."""
    labels = set()
    for node in _walk(promql.parse(expr)):
        if isinstance(node, promql.AggregateExpr) and node.modifier is not None:
            labels.update(node.modifier.labels)
    return labels


def dashboard_queries() -> list[Query]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        Query(f"{DASHBOARD.name}: panel {p['title']!r}", t["expr"])
        for p in dashboard["panels"]
        for t in p["targets"]
    ]


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def rule_queries() -> list[Query]:
    return [Query(f"{RULES.name}: {r.get('alert') or r.get('record')}", r["expr"]) for r in rules()]


def recorded_names() -> set[str]:
    return {r["record"] for r in rules() if "record" in r}


def adapter_rule() -> dict:
    (rule,) = yaml.safe_load(ADAPTER_VALUES.read_text())["rules"]["custom"]
    return rule


def adapter_query(rule: dict) -> Query:
    """The rule's metricsQuery as prometheus-adapter sends it for one pod (its Go templates filled)."""
    series = promql.parse(rule["seriesQuery"]).name
    expr = (
        rule["metricsQuery"]
        .replace("<<.Series>>", series)
        .replace("<<.LabelMatchers>>", 'namespace="default",pod=~"perception-serving-.*"')
        .replace("<<.GroupBy>>", "pod")
    )
    return Query(f"{ADAPTER_VALUES.name}: {rule['name']['as']}", expr)


def all_queries() -> list[Query]:
    rule = adapter_rule()
    return [
        *dashboard_queries(),
        *rule_queries(),
        Query(f"{ADAPTER_VALUES.name}: seriesQuery", rule["seriesQuery"]),
        adapter_query(rule),
    ]


# --- tritonserver command lines -----------------------------------------------------------------
def tritonserver_args() -> dict[str, list[str]]:
    """The tritonserver arguments of the Dockerfile's CMD, the Deployment and the InferenceService."""
    cmd = re.search(r"^CMD (\[.*?\])", (DEPLOY / "Dockerfile").read_text(), re.S | re.M)
    assert cmd, "deploy/Dockerfile has no exec-form CMD"
    container = kind_of("Deployment")["spec"]["template"]["spec"]["containers"][0]
    kserve = yaml_docs(K8S / "kserve-inferenceservice.yaml")[0]["spec"]["predictor"]["triton"]
    return {
        "Dockerfile CMD": json.loads(cmd.group(1).replace("\\\n", ""))[1:],
        "Deployment": container["args"][1:],
        "InferenceService": kserve["args"],
    }
