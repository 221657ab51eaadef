"""The deployment files parse and agree with each other (ports, image, Triton version)."""

import json
import re
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"

# NGC release <-> Triton server version of the tritonserver inside nvidia-pytriton 0.7.0
NGC_RELEASE = "24.10"


def _yaml_docs():
    for path in sorted(DEPLOY.rglob("*.y*ml")):
        yield path, list(yaml.safe_load_all(path.read_text()))


def test_every_deploy_yaml_parses():
    parsed = dict(_yaml_docs())
    assert len(parsed) >= 6 and all(docs and docs[0] for docs in parsed.values())


def test_images_use_the_tested_triton_release():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert f"nvcr.io/nvidia/tritonserver:{NGC_RELEASE}-py3" in dockerfile
    kserve = yaml.safe_load((DEPLOY / "k8s" / "kserve-inferenceservice.yaml").read_text())
    assert kserve["spec"]["predictor"]["triton"]["runtimeVersion"] == f"{NGC_RELEASE}-py3"


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


def test_dashboard_queries_only_triton_metric_families():
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "perception-serving.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    names = {m for e in exprs for m in re.findall(r"\bnv_[a-z_]+", e)}
    assert names and all(n.startswith(("nv_inference_", "nv_gpu_")) for n in names)
