"""What the overload, fault and soak tests share: a tiny repository with chosen serving options, a
closed-loop load of client threads that records every outcome, the server's Prometheus gauges, its
state as a row of RELIABILITY.md shows it, and the resident memory of the server and its stubs."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clients import PerceptionClient
from clients.options import ClientOptions
from serving.launcher import TritonServer, http_ok
from serving.model_config import RepositoryOptions
from serving.spec import ModelSpec
from serving.stubs import server_rss_bytes
from tests.tiny_onnx import make_tiny_onnx

MB = 1 << 20


def tiny_repository(dest: Path, hw: tuple[int, int] = (64, 96), **options) -> Path:
    """The tiny camera network (tests.tiny_onnx) and its ensemble ``perception`` at ``hw``."""
    from serving.repository import build_repository

    dest.mkdir(parents=True, exist_ok=True)
    onnx = make_tiny_onnx(ModelSpec(name="tiny", input_hw=hw, top_k=4), dest / "tiny.onnx")
    build_repository([onnx], dest / "repo", RepositoryOptions(**options))
    return dest / "repo"


def frame(seed: int = 0, hw: tuple[int, int] = (64, 96)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (*hw, 3), dtype=np.uint8)


def gauge(metrics_url: str, name: str) -> dict[str, float]:
    """A Prometheus gauge of the server by model, e.g. nv_inference_pending_request_count."""
    with urllib.request.urlopen(metrics_url, timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line[len(name) + 1 :].rsplit("}", 1)
            model = next(p.split("=", 1)[1].strip('"') for p in labels.split(",") if p.startswith("model="))
            out[model] = out.get(model, 0.0) + float(value)
    return out


def wait_pending_zero(metrics_url: str, timeout_s: float = 10.0) -> tuple[dict[str, float], float]:
    """Poll the pending-request gauge until every model shows 0; returns it and the seconds waited."""
    t0 = time.monotonic()
    pending = gauge(metrics_url, "nv_inference_pending_request_count")
    while any(pending.values()) and time.monotonic() - t0 < timeout_s:
        time.sleep(0.05)
        pending = gauge(metrics_url, "nv_inference_pending_request_count")
    return pending, time.monotonic() - t0


def server_state(server: TritonServer, model: str = "perception") -> str:
    """ "live, ready" as the server reports it over HTTP (what a row's last column says)."""
    if not server.running:
        return "exited"
    base = f"http://{server.http_url}/v2"
    live, ready = http_ok(f"{base}/health/live"), http_ok(f"{base}/health/ready")
    model_ready = http_ok(f"{base}/models/{model}/ready")
    words = ["live" if live else "not live", "ready" if ready else "not ready"]
    return ", ".join([*words, f"{model} {'ready' if model_ready else 'not ready'}"])


@dataclass
class Outcome:
    start: float  # time.monotonic()
    end: float
    error: str  # "" when it succeeded; else the error's status and message


@dataclass
class Load:
    """``threads`` closed-loop clients calling ``infer`` until :meth:`stop`; every outcome kept."""

    options: ClientOptions
    threads: int = 4
    image: np.ndarray = field(default_factory=frame)
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers = [threading.Thread(target=self._loop, daemon=True) for _ in range(self.threads)]

    def _loop(self) -> None:
        with PerceptionClient(options=self.options) as client:
            while not self._stop.is_set():
                t0 = time.monotonic()
                try:
                    client.infer(frame=self.image)
                    error = ""
                except Exception as exc:  # every outcome is data here
                    error = f"{type(exc).__name__}: {exc}"
                with self._lock:
                    self.outcomes.append(Outcome(t0, time.monotonic(), error))

    def start(self) -> Load:
        for w in self._workers:
            w.start()
        return self

    def stop(self) -> Load:
        self._stop.set()
        for w in self._workers:
            w.join(60)
        return self

    def ok_between(self, t0: float, t1: float) -> int:
        return sum(1 for o in self.outcomes if not o.error and t0 <= o.end < t1)

    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.error]

    def error_kinds(self) -> Counter:
        return Counter(o.error.split(":")[0] + ":" + o.error.split(":")[1][:40] for o in self.failures())


class RssSampler:
    """Samples the RSS of the server and of each stub every ``period_s`` from a thread."""

    def __init__(self, server: TritonServer, period_s: float = 1.0) -> None:
        self.server = server
        self.period_s = period_s
        self.samples: list[tuple[float, dict[str, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            pid = self.server.pid
            if pid is not None:
                self.samples.append((time.monotonic(), server_rss_bytes(pid)))
            self._stop.wait(self.period_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)

    def peak_total(self) -> int:
        return max((sum(s.values()) for _, s in self.samples), default=0)
