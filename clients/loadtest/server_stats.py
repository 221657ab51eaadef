"""Triton's statistics API as deltas: where the server spent a window, and how well it batched."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

PHASES = ("queue", "compute_input", "compute_infer", "compute_output")


@dataclass(frozen=True)
class ModelCounters:
    """Cumulative counters of one model (summed over its versions)."""

    success_count: int = 0
    success_ns: int = 0
    fail_count: int = 0
    inference_count: int = 0
    execution_count: int = 0
    queue_ns: int = 0
    compute_input_ns: int = 0
    compute_infer_ns: int = 0
    compute_output_ns: int = 0

    def __sub__(self, other: ModelCounters) -> ModelCounters:
        return ModelCounters(**{k: v - getattr(other, k) for k, v in asdict(self).items()})


@dataclass(frozen=True)
class ServerSplit:
    """Per-request averages over a delta, in milliseconds, and the average executed batch size."""

    requests: int
    failures: int
    avg_request_ms: float
    queue_ms: float
    compute_input_ms: float
    compute_infer_ms: float
    compute_output_ms: float
    executions: int
    avg_batch: float

    @classmethod
    def from_delta(cls, d: ModelCounters) -> ServerSplit:
        n = max(d.success_count, 1)
        return cls(
            requests=d.success_count,
            failures=d.fail_count,
            avg_request_ms=d.success_ns / n / 1e6,
            queue_ms=d.queue_ns / n / 1e6,
            compute_input_ms=d.compute_input_ns / n / 1e6,
            compute_infer_ms=d.compute_infer_ns / n / 1e6,
            compute_output_ms=d.compute_output_ns / n / 1e6,
            executions=d.execution_count,
            # inferences per execution: what the dynamic batcher achieved
            avg_batch=d.inference_count / d.execution_count if d.execution_count else 0.0,
        )


def read_counters(client, models: tuple[str, ...]) -> dict[str, ModelCounters]:
    """Current counters of ``models`` from a ``tritonclient.grpc.InferenceServerClient``."""
    out = {}
    for model in models:
        totals = dict.fromkeys(ModelCounters.__dataclass_fields__, 0)
        for stats in client.get_inference_statistics(model).model_stats:
            inf = stats.inference_stats
            totals["success_count"] += inf.success.count
            totals["success_ns"] += inf.success.ns
            totals["fail_count"] += inf.fail.count
            totals["inference_count"] += stats.inference_count
            totals["execution_count"] += stats.execution_count
            for phase in PHASES:
                totals[f"{phase}_ns"] += getattr(inf, phase).ns
        out[model] = ModelCounters(**totals)
    return out


def settled_counters(
    client, models: tuple[str, ...], timeout_s: float = 3.0, poll_s: float = 0.1
) -> dict[str, ModelCounters]:
    """Counters once they stop moving. Triton counts a request when the backend releases it, which
    can come just after the client already holds the response; read until two reads agree."""
    current = read_counters(client, models)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(poll_s)
        again = read_counters(client, models)
        if again == current:
            break
        current = again
    return current


def splits(after: dict[str, ModelCounters], before: dict[str, ModelCounters]) -> dict[str, ServerSplit]:
    return {m: ServerSplit.from_delta(after[m] - before[m]) for m in after}
