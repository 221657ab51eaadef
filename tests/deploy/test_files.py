"""The deployment files parse and agree with each other (ports, image, Triton version)."""

import json
import re

import yaml

from serving import ngc
from tests.deploy.files import DEPLOY, grouping_labels, rules


def _yaml_docs():
    for path in sorted(DEPLOY.rglob("*.y*ml")):
        yield path, list(yaml.safe_load_all(path.read_text()))


def test_every_deploy_yaml_parses():
    parsed = dict(_yaml_docs())
    assert len(parsed) >= 6 and all(docs and docs[0] for docs in parsed.values())


def test_deploy_files_name_the_release_of_serving_ngc_and_no_other():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert f"ARG TRITON_IMAGE={ngc.TRITON_IMAGE}\n" in dockerfile
    builder = (DEPLOY / "Dockerfile.builder").read_text()
    assert f"ARG TENSORRT_IMAGE={ngc.TENSORRT_IMAGE}\n" in builder and "torch" not in builder.lower().replace(
        "no torch", ""
    )
    kserve = yaml.safe_load((DEPLOY / "k8s" / "kserve-inferenceservice.yaml").read_text())
    assert kserve["spec"]["predictor"]["triton"]["runtimeVersion"] == ngc.KSERVE_RUNTIME_VERSION
    images = re.findall(r"nvcr\.io/nvidia/(?:tritonserver|tensorrt):[\w.-]+", _all_deploy_text())
    assert images and set(images) <= {ngc.TRITON_IMAGE, ngc.TENSORRT_IMAGE}, sorted(set(images))


def _all_deploy_text() -> str:
    paths = [
        p
        for p in sorted(DEPLOY.rglob("*"))
        if p.is_file() and (p.suffix in {".yaml", ".yml", ".md", ".builder"} or p.name == "Dockerfile")
    ]
    return "\n".join(p.read_text() for p in paths)


def test_ports_agree_between_compose_kubernetes_and_prometheus():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert compose["services"]["triton"]["ports"] == ["8000:8000", "8001:8001", "8002:8002"]
    deployment = yaml.safe_load((DEPLOY / "k8s" / "deployment.yaml").read_text())
    ports = {
        p["name"]: p["containerPort"]
        for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
    }
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert prom["scrape_configs"][0]["static_configs"][0]["targets"] == ["triton:8002"]


def test_dashboard_legends_name_labels_the_query_keeps():
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "perception-serving.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            legend = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
            assert legend <= grouping_labels(target["expr"]), f"panel {panel['title']!r}: legend {legend}"


def test_prometheus_loads_the_rules_that_compose_mounts():
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    mounts = {}  # container path -> file here
    for volume in compose["services"]["prometheus"]["volumes"]:
        source, target, *_ = volume.split(":")
        mounts[target] = source
    for rule_file in prom["rule_files"]:
        assert (DEPLOY / mounts[rule_file].removeprefix("./")).is_file(), rule_file


def test_every_rule_records_or_alerts_with_a_severity_and_a_summary():
    for rule in rules():
        assert ("alert" in rule) != ("record" in rule), rule
        if "alert" in rule:
            assert rule["labels"]["severity"] in {"warning", "critical"} and rule["annotations"]["summary"]
        else:
            assert re.fullmatch(r"[a-z_]+:[a-z_]+:[a-z0-9_]+", rule["record"]), "level:metric:operations"
