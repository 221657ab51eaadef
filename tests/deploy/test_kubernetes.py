"""The Kubernetes manifests are valid for the Kubernetes version we state, and agree with each other.

Built-in kinds are validated (strict: an unknown field fails) against the Kubernetes API's JSON
schemas of K8S_VERSION that kubernetes-validate ships inside its wheel: offline, no cluster. Custom
resources have no schema there: the KServe InferenceService is checked against a schema written here
from KServe's v1beta1 Go types (predictor framework = PredictorExtensionSpec: storageUri,
runtimeVersion, protocolVersion, storage, plus an inline core/v1 Container, whose fields are checked
against Kubernetes' own Container schema). No kustomize binary installs from the package registry:
the kustomization is checked in Python (resources exist, parse, unique kind/name, none forgotten);
kustomize's own rendering (patches, generators: none are used) is not run.
"""

from __future__ import annotations

import copy
import re
import subprocess

import pytest

from tests.deploy.files import (
    ADAPTER_VALUES,
    K8S,
    adapter_rule,
    kind_of,
    manifests,
    tritonserver_args,
    yaml_docs,
)

kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is in the dev extra")
jsonschema = pytest.importorskip("jsonschema")

K8S_VERSION = "1.33"  # the Kubernetes API the manifests are written for and checked against
CUSTOM_KINDS = {"InferenceService", "Kustomization"}  # no upstream schema in kubernetes-validate


def _builtin():
    return [(path, doc) for path, doc in manifests() if doc["kind"] not in CUSTOM_KINDS]


def test_the_stated_kubernetes_version_ships_with_the_validator():
    assert K8S_VERSION in {v.rsplit(".", 1)[0] for v in kv.utils.all_versions()}


@pytest.mark.parametrize("path,doc", _builtin(), ids=lambda x: getattr(x, "name", None) or x["kind"])
def test_manifest_validates_against_the_kubernetes_api_schema(path, doc):
    assert kv.validate(doc, K8S_VERSION, strict=True) == K8S_VERSION


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d["spec"].__setitem__("replica", 2),  # unknown field (typo of replicas)
        lambda d: d["spec"].__setitem__("replicas", "two"),
        lambda d: d["spec"]["template"]["spec"]["containers"][0].pop("name"),
    ],
    ids=["unknown-field", "wrong-type", "missing-required"],
)
def test_a_broken_manifest_fails_validation(damage):
    broken = copy.deepcopy(kind_of("Deployment"))
    damage(broken)
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, K8S_VERSION, strict=True)


# --- kustomize --------------------------------------------------------------------------------
def test_kustomization_lists_every_manifest_once_and_each_parses():
    kustomization = yaml_docs(K8S / "kustomization.yaml")[0]
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed))
    on_its_own = {"kustomization.yaml", "kserve-inferenceservice.yaml", "tensorrt-plans.yaml"}
    others = {p.name for p in K8S.glob("*.yaml")} - on_its_own
    assert set(listed) == others, "a manifest in deploy/k8s is missing from kustomization.yaml"
    objects = [doc for name in listed for doc in yaml_docs(K8S / name)]
    keys = [(d["kind"], d["metadata"]["name"]) for d in objects]
    assert len(keys) == len(set(keys)), keys
    assert all(d.get("apiVersion") for d in objects)


# --- KServe -----------------------------------------------------------------------------------
def _definitions() -> dict:
    """Kubernetes' strict schema definitions of K8S_VERSION (``#/$defs/...`` refer into them)."""
    return kv.utils.schema_contents(
        f"kubernetes-json-schema/v{K8S_VERSION}.0-local-strict/_definitions.json", K8S_VERSION
    )["$defs"]


def _predictor_framework_schema(definitions: dict) -> dict:
    """KServe's PredictorExtensionSpec: its own fields next to an inline core/v1 Container whose
    ``name`` is optional (KServe fills it)."""
    schema = copy.deepcopy(definitions["io.k8s.api.core.v1.Container"])
    schema["required"] = ["storageUri"]
    schema["properties"] = {
        **schema["properties"],
        "storageUri": {"type": "string", "pattern": "^(s3|gs|pvc|https?|hdfs|webhdfs|oci)://"},
        "runtimeVersion": {"type": "string"},
        "protocolVersion": {"enum": ["v1", "v2", "grpc-v1", "grpc-v2"]},
        "storage": {"type": "object"},
    }
    return schema


# InferenceServicePredictorSpec: `model` (with a modelFormat) or one of the framework fields
FRAMEWORKS = (
    "model",
    *("sklearn", "xgboost", "tensorflow", "pytorch", "triton", "onnx", "pmml", "lightgbm", "paddle"),
)


def _framework_pairs() -> list[tuple[str, str]]:
    return [(a, b) for a in FRAMEWORKS for b in FRAMEWORKS if a < b]


def _inference_service_schema() -> dict:
    definitions = _definitions()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$defs": definitions,
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "serving.kserve.io/v1beta1"},
            "kind": {"const": "InferenceService"},
            "metadata": {
                "$ref": "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
                "required": ["name"],
            },
            "spec": {
                "type": "object",
                "required": ["predictor"],
                "properties": {
                    "predictor": {
                        "type": "object",
                        # KServe: exactly one framework (or `model`) per predictor
                        "minProperties": 1,
                        "properties": {"triton": _predictor_framework_schema(definitions)},
                        "not": {"anyOf": [{"required": list(pair)} for pair in _framework_pairs()]},
                    }
                },
            },
        },
    }


def test_kserve_inference_service_matches_the_kserve_v1beta1_fields():
    (doc,) = yaml_docs(K8S / "kserve-inferenceservice.yaml")
    validator = jsonschema.Draft202012Validator(_inference_service_schema())
    validator.validate(doc)
    triton = doc["spec"]["predictor"]["triton"]
    for predictor in (
        {"triton": {**triton, "storageURI": triton["storageUri"]}},  # unknown field (KServe's: storageUri)
        {"triton": {**triton, "ports": [{"name": "h2c", "containerPort": "8001"}]}},  # Container field type
        {"triton": triton, "onnx": triton},  # two frameworks
    ):
        with pytest.raises(jsonschema.ValidationError):
            validator.validate({**doc, "spec": {"predictor": predictor}})


# --- the objects agree ------------------------------------------------------------------------
def test_hpa_scales_the_deployment_on_the_adapters_metric():
    hpa, deployment = kind_of("HorizontalPodAutoscaler"), kind_of("Deployment")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": deployment["apiVersion"],
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods", "queue time per request is a per-pod metric"
    served = adapter_rule()["name"]["as"]
    assert metric["pods"]["metric"]["name"] == served, f"the HPA must use the name {ADAPTER_VALUES} serves"
    assert metric["pods"]["target"]["type"] == "AverageValue"
    assert set(adapter_rule()["resources"]["overrides"]) == {"namespace", "pod"}


def test_services_select_the_pods_and_grpc_goes_through_the_headless_one():
    deployment = kind_of("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    services = [d for _, d in manifests() if d["kind"] == "Service"]
    for svc in services:
        assert svc["spec"]["selector"].items() <= pod_labels.items()
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= set(ports)
    (grpc,) = [s for s in services if any(p["name"] == "grpc" for p in s["spec"]["ports"])]
    assert grpc["spec"].get("clusterIP") == "None", "gRPC behind a ClusterIP is balanced per connection"
    # a headless Service's DNS answers pod IPs: clients connect to the container port itself
    assert [p["port"] for p in grpc["spec"]["ports"]] == [ports["grpc"]]


def _tritonserver_help() -> str:
    from serving.launcher import ServerOptions, TritonServer, pytriton_root

    server = TritonServer(ServerOptions(repository=K8S))  # only for its environment (libraries)
    binary = pytriton_root() / "bin" / "tritonserver"
    out = subprocess.run(
        [str(binary), "--help"], env=server.environment(), capture_output=True, text=True, timeout=60
    )
    return out.stdout + out.stderr


@pytest.mark.triton
def test_every_tritonserver_flag_of_the_deployment_exists_in_triton_2_51():
    pytest.importorskip("pytriton", reason="the tritonserver binary comes with nvidia-pytriton")
    known = set(re.findall(r"^\s+(--[a-z0-9-]+)", _tritonserver_help(), re.M))
    assert "--model-repository" in known
    for where, args in tritonserver_args().items():
        flags = [a.split("=", 1)[0] for a in args]
        assert flags and set(flags) <= known, f"{where}: {sorted(set(flags) - known)} not tritonserver flags"


def test_the_plan_builder_job_runs_the_builder_on_one_gpu_and_keeps_plans_on_a_volume():
    job = kind_of("Job")
    pod = job["spec"]["template"]["spec"]
    (builder,) = pod["containers"]
    assert pod["restartPolicy"] == "Never" and builder["resources"]["limits"]["nvidia.com/gpu"] == 1
    onnx, out_dir = builder["args"][:2]
    mounts = {m["mountPath"] for m in builder["volumeMounts"]}
    assert any(onnx.startswith(m + "/") for m in mounts) and any(out_dir.startswith(m) for m in mounts)
    assert "nvidia.com/gpu.product" in pod["nodeSelector"], "plans are per GPU model"
