"""Every metric the Grafana dashboard, the Prometheus rules and the HPA's adapter rule use is in the
``/metrics`` of the real tritonserver serving the demo repository, so a renamed metric fails here.

The server is the session's ``triton_server`` (cam-n + fusion-n pipelines); a few requests are sent
before scraping so that the request counters have moved. The tritonserver of nvidia-pytriton runs
on CPU here and has no GPU metrics: the GPU families are a stated allow-list, the ones Triton's
metrics documentation lists under "GPU Metrics" (docs/user_guide/metrics.md of
triton-inference-server/server, unchanged in 2.51 / r24.10), each with its ``gpu_uuid`` label. On a
server that does report GPU metrics they must be there like every other family. ~2 s beyond the
session's server.
"""

from __future__ import annotations

import re
import time
import urllib.request
from dataclasses import dataclass

import pytest

from serving import spec as S
from tests.deploy.files import (
    PROMETHEUS_SERIES,
    TARGET_LABELS,
    Query,
    adapter_query,
    adapter_rule,
    all_queries,
    grouping_labels,
    metric_names,
    recorded_names,
    rules,
)
from tests.serving.triton_helpers import grpcclient, infer, scenes

pytestmark = pytest.mark.triton

GPU_ONLY = {  # family -> its labels (Triton metrics docs, "GPU Metrics"; collected through DCGM)
    name: frozenset({"gpu_uuid"})
    for name in (
        "nv_gpu_utilization",
        "nv_gpu_memory_total_bytes",
        "nv_gpu_memory_used_bytes",
        "nv_gpu_power_usage",
        "nv_gpu_power_limit",
        "nv_energy_consumption",
    )
}
REQUESTS = 3
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$")


@dataclass(frozen=True)
class Scrape:
    families: dict[str, str]  # name -> type, from the `# TYPE` lines
    labels: dict[str, frozenset[str]]  # name -> label names its samples carry
    values: dict[str, float]  # name -> sum over its samples

    @property
    def gpu_server(self) -> bool:
        return any(name in self.families for name in GPU_ONLY)


def scrape(url: str) -> Scrape:
    text = urllib.request.urlopen(url, timeout=30).read().decode()
    families, labels, values = {}, {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            families[name] = kind
        elif line and not line.startswith("#"):
            m = _SAMPLE.match(line)
            assert m, f"not a Prometheus sample line: {line!r}"
            name, label_text, value = m.groups()
            found = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', label_text or ""))
            labels[name] = labels.get(name, frozenset()) | found
            values[name] = values.get(name, 0.0) + float(value)
    return Scrape(families, labels, values)


def _send_requests(url: str) -> None:
    for scene in scenes(range(REQUESTS)):
        infer(url, S.ENSEMBLE_CAMERA, {S.IMAGE: scene.image[None]})


@pytest.fixture(scope="module")
def served_metrics(triton_server) -> Scrape:
    _send_requests(triton_server.url)
    return scrape(triton_server.metrics_url)


def _known(scraped: Scrape) -> set[str]:
    known = set(scraped.families) | PROMETHEUS_SERIES | recorded_names()
    return known if scraped.gpu_server else known | set(GPU_ONLY)


@pytest.mark.parametrize("query", all_queries(), ids=lambda q: q.where)
def test_every_metric_a_query_uses_is_served(query: Query, served_metrics):
    names = metric_names(query.expr)
    assert names, f"{query.where}: selects no metric"
    missing = names - _known(served_metrics)
    assert not missing, f"{query.where}: {sorted(missing)} not in tritonserver's /metrics"


@pytest.mark.parametrize("query", all_queries(), ids=lambda q: q.where)
def test_every_label_a_query_groups_by_is_on_its_series(query: Query, served_metrics):
    recorded = {r["record"]: grouping_labels(r["expr"]) for r in rules() if "record" in r}
    labels = set(TARGET_LABELS)
    for name in metric_names(query.expr):
        labels |= served_metrics.labels.get(name) or GPU_ONLY.get(name) or recorded.get(name, set())
    missing = grouping_labels(query.expr) - labels
    assert not missing, f"{query.where}: groups by {sorted(missing)}, a label none of its series has"


def test_a_renamed_metric_is_caught(served_metrics):
    renamed = "sum by (model) (rate(nv_inference_queue_duration_ms[1m]))"  # _us renamed
    assert metric_names(renamed) - _known(served_metrics) == {"nv_inference_queue_duration_ms"}


def test_gpu_only_families_are_really_absent_on_this_cpu_server(served_metrics):
    """Keeps the allow-list honest: on a CPU server none is served (and all are on a GPU one)."""
    present = set(GPU_ONLY) & set(served_metrics.families)
    assert present in (set(), set(GPU_ONLY))
    assert served_metrics.families["nv_inference_request_success"] == "counter"


def test_the_hpa_metric_is_queue_microseconds_per_successful_request(triton_server, served_metrics):
    """The adapter's ratio, taken between two scrapes, equals what Triton's statistics API says of
    the same requests: queue time in microseconds over successful requests (so the HPA's target is
    in microseconds)."""
    rule = adapter_rule()
    series = metric_names(rule["seriesQuery"])
    assert series == {"nv_inference_queue_duration_us"}
    assert metric_names(adapter_query(rule).expr) == series | {"nv_inference_request_success"}
    client = grpcclient.InferenceServerClient(triton_server.url)
    try:

        def statistics() -> tuple[int, int]:
            models = client.get_inference_statistics().model_stats
            return (
                sum(m.inference_stats.queue.ns for m in models),
                sum(m.inference_stats.success.count for m in models),
            )

        before, ns_before = scrape(triton_server.metrics_url), statistics()
        _send_requests(triton_server.url)
        # Triton counts an ensemble's steps after the reply has left: read both until they settle
        for _ in range(50):
            after, ns_after = scrape(triton_server.metrics_url), statistics()
            success = (
                after.values["nv_inference_request_success"] - before.values["nv_inference_request_success"]
            )
            if success == ns_after[1] - ns_before[1]:
                break
            time.sleep(0.1)
    finally:
        client.close()
    queue_us = (
        after.values["nv_inference_queue_duration_us"] - before.values["nv_inference_queue_duration_us"]
    )
    success = after.values["nv_inference_request_success"] - before.values["nv_inference_request_success"]
    assert success == ns_after[1] - ns_before[1] >= REQUESTS
    # the metric is the statistics' nanoseconds in whole microseconds, rounded per model update
    assert abs(queue_us - (ns_after[0] - ns_before[0]) / 1000) <= success
