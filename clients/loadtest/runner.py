"""The load-test orchestrator: worker processes, steps, warm-up, windows until stable, server deltas."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import platform
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Any

from clients._core import triton_client
from clients.errors import PermissionDeniedError, from_triton_exception
from clients.loadtest.frames import Frame
from clients.loadtest.options import LoadTestOptions
from clients.loadtest.payload import ModelInfo, build_payload, fetch_model_info
from clients.loadtest.result import LoadTestResult, StepResult, StreamsSummary
from clients.loadtest.server_stats import read_counters, settled_counters, splits
from clients.loadtest.stats import Latency, Window, is_stable, window_of
from clients.loadtest.worker import Records, StepPlan, WorkerJob, worker_main
from clients.served import Served, fetch_served, not_served_error
from serving.errors import ClientError, PerceptionError
from serving.spec import IMAGES, SOURCE_HW

log = logging.getLogger(__name__)

_START_TIMEOUT_S = 60.0


def _input_names(config: dict) -> set[str]:
    return {t["name"] for t in config.get("input", [])}


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` threads over at most ``parts`` processes, none empty: 5 over 2 -> [3, 2]."""
    parts = max(1, min(parts, total))
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if names:
            cpu = names[0]
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_avg_1m": os.getloadavg()[0],
    }


class LoadTest:
    """Context manager owning the worker processes; ``run()`` performs the sweep.

    >>> with LoadTest(options, frames) as test:
    ...     result = test.run()
    """

    def __init__(
        self,
        options: LoadTestOptions,
        frames: list[Frame],
        inputs_label: str = "frames",
        on_step: Callable[[StepResult], None] | None = None,
    ) -> None:
        if not frames:
            raise PerceptionError("a load test needs at least one frame")
        self.options = options
        self.frames = frames
        self.inputs_label = inputs_label
        self.on_step = on_step
        self._procs: list = []
        self._conns: list = []
        self._client: Any = None
        self.infos: dict[str, ModelInfo] = {}
        self._networks: list[str] = []

    # --- setup / teardown ------------------------------------------------------------------
    def __enter__(self) -> LoadTest:
        self._client = triton_client(self.options.connection)  # with its TLS and headers
        try:
            self._read_models()
            payloads = {
                m: [build_payload(info, f, self.options.encoding) for f in self.frames]
                for m, info in self.infos.items()
            }
            self._spawn(payloads)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _read_models(self) -> None:
        """Each model's description as the client library reads it, and which models (the targets
        or their ensemble steps) are networks."""
        from tritonclient.utils import InferenceServerException

        url = self.options.url
        try:
            if not self._client.is_server_ready(client_timeout=10):
                raise ClientError(f"Triton at {url} is not ready")
            for model in self.options.models:
                if not self._client.is_model_ready(model, client_timeout=10):
                    raise not_served_error(model, url, self._served())
                configs: dict[str, dict] = {}  # the model's and its steps', as fetched
                self.infos[model] = fetch_model_info(partial(self._config, configs), model)
                # the models that run a network: the raw network (images) or a frame model (source_hw)
                self._networks += [m for m, c in configs.items() if {IMAGES, SOURCE_HW} & _input_names(c)]
        except InferenceServerException as exc:
            error = from_triton_exception(exc)
            if isinstance(error, PermissionDeniedError):
                raise PermissionDeniedError(f"Triton at {url} refused the load test: {error}") from exc
            raise ClientError(f"cannot reach Triton at {url}: {exc}") from exc

    def _served(self) -> Served:
        return fetch_served(
            lambda: self._client.get_model_repository_index(as_json=True, client_timeout=10),
            partial(self._config, {}),
        )

    def _config(self, fetched: dict[str, dict], model: str) -> dict:
        fetched[model] = self._client.get_model_config(model, as_json=True, client_timeout=10)["config"]
        return fetched[model]

    def _spawn(self, payloads) -> None:
        opts = self.options
        # spawn, not fork: a forked child inherits the parent's gRPC state, which gRPC forbids
        ctx = mp.get_context("spawn")
        # closed loop: never more processes than the largest step has requests in flight
        n_workers = min(opts.workers, max(opts.steps)) if opts.mode == "concurrency" else opts.workers
        for index in range(n_workers):
            parent, child = ctx.Pipe()
            job = WorkerJob(
                index,
                opts.connection,
                opts.models,
                payloads,
                opts.shared_memory,
                opts.request_timeout_s,
                opts.seed,
            )
            proc = ctx.Process(target=worker_main, args=(job, child), daemon=True, name=f"loadtest-{index}")
            proc.start()
            self._procs.append(proc)
            self._conns.append(parent)
        for conn in self._conns:
            reply = self._recv(conn, _START_TIMEOUT_S)
            if reply != "ready":
                raise ClientError(
                    f"load worker failed to start: {reply[1] if isinstance(reply, tuple) else reply}"
                )

    def __exit__(self, *exc) -> None:
        for conn in self._conns:
            with contextlib.suppress(BrokenPipeError, OSError):
                conn.send(("exit",))
        for proc in self._procs:
            proc.join(timeout=self.options.request_timeout_s + 10)
            if proc.is_alive():
                log.warning("load worker %s did not exit; terminating it", proc.pid)
                proc.terminate()
                proc.join(timeout=5)
        self._procs, self._conns = [], []
        if self._client is not None:
            self._client.close()
            self._client = None

    def _recv(self, conn, timeout_s: float):
        if not conn.poll(timeout_s):
            raise ClientError(f"load worker did not answer within {timeout_s:.0f} s")
        return conn.recv()

    def _ask(self, conns, command, timeout_s: float) -> list:
        for conn in conns:
            conn.send(command)
        return [self._recv(conn, timeout_s) for conn in conns]

    # --- the sweep ---------------------------------------------------------------------------
    @property
    def network_models(self) -> tuple[str, ...]:
        """Models that take the network input ``images``: the targets themselves or ensemble steps."""
        return tuple(self._networks)

    @property
    def stats_models(self) -> tuple[str, ...]:
        names: list[str] = []
        for model, info in self.infos.items():
            names += [model, *info.steps]
        names += list(self.options.extra_stats_models)
        return tuple(dict.fromkeys(names))

    def new_result(self) -> LoadTestResult:
        """An empty result for this test's steps (``run`` fills one; callers may run steps themselves)."""
        opts = self.options
        return LoadTestResult(
            url=opts.url,
            models=opts.models,
            mode=opts.mode,
            inputs=self.inputs_label,
            options=opts.described(),
            machine=machine_info(),
        )

    def run(self) -> LoadTestResult:
        result = self.new_result()
        for concurrency in self.options.steps:
            step = self.run_step(concurrency)
            result.steps.append(step)
            if self.on_step is not None:
                self.on_step(step)
        return result

    def _plans(self, concurrency: int) -> list[tuple]:
        opts = self.options
        if opts.mode == "streams":  # stream s runs in process s mod n; the processes idle without one
            n = len(self._conns)
            return [
                (
                    conn,
                    StepPlan(
                        "streams",
                        max_outstanding=opts.max_outstanding,
                        streams=tuple(range(i, concurrency, n)),
                        total_streams=concurrency,
                        fps=opts.fps,
                        deadline_s=opts.deadline_s,
                    ),
                )
                for i, conn in enumerate(self._conns)
            ]
        if opts.rate is not None:
            n = len(self._conns)
            cap = max(1, opts.max_outstanding // n)
            plan = StepPlan("rate", rate=opts.rate / n, arrivals=opts.arrivals, max_outstanding=cap)
            return [(conn, plan) for conn in self._conns]
        shares = split_evenly(concurrency, len(self._conns))
        return [
            (conn, StepPlan("concurrency", threads=k)) for conn, k in zip(self._conns, shares, strict=False)
        ]

    def run_step(self, concurrency: int) -> StepResult:
        """Start the load, warm up, measure windows until stable (or the cap), stop and drain.

        The server's counters are read idle before and settled after, so the step's totals compare
        exactly with what the harness counted; the windows' own deltas give the server split.
        """
        opts = self.options
        plans = self._plans(concurrency)
        conns = [conn for conn, _ in plans]
        timeout = opts.request_timeout_s + 10
        before_step = settled_counters(self._client, self.stats_models)
        wall_start = time.perf_counter()
        for conn, plan in plans:
            conn.send(("start", plan))
        for conn in conns:
            self._recv(conn, timeout)
        total = Records()
        time.sleep(opts.warmup_s)
        total.merge(self._collect(conns, timeout))

        windows, window_records, counters = self._measure(conns, timeout)
        for records in window_records:
            total.merge(records)
        for records in self._ask(conns, ("stop",), timeout):
            total.merge(records)
        wall = time.perf_counter() - wall_start
        after_step = settled_counters(self._client, self.stats_models)

        k = min(opts.stable_windows, len(windows))
        measured = Records()
        for records in window_records[-k:]:
            measured.merge(records)
        duration = sum(w.duration_s for w in windows[-k:])
        streams = None
        latency = Latency.of(measured.latencies_s)
        if opts.mode == "streams":
            late_ms = opts.deadline_s * 1e3
            streams = StreamsSummary.of(measured, concurrency, opts.fps, late_ms)
            latency = Latency.of_tail(streams.latency)
        step = StepResult(
            mode=opts.mode,
            concurrency=concurrency,
            target_rate=concurrency * opts.fps if streams else opts.rate,
            windows=len(windows),
            stable=is_stable(windows, opts.stable_windows, opts.tolerance),
            duration_s=duration,
            successes=len(measured.latencies_s),
            throughput=len(measured.latencies_s) / duration,
            latency=latency,
            errors=dict(Counter(measured.errors)),
            dropped=measured.dropped,
            max_send_lag_ms=measured.max_send_lag_s * 1e3,
            server=splits(counters[-1], counters[-1 - k]),
            client_successes_total=len(total.latencies_s),
            client_errors_total=sum(total.errors.values()),
            server_successes_total={m: d.requests for m, d in splits(after_step, before_step).items()},
            harness_cpu_ms_per_request=total.cpu_s * 1e3 / max(total.completed, 1),
            harness_cpu_share=total.cpu_s / (wall * (os.cpu_count() or 1)),
            networks=self.network_models,
            streams=streams,
        )
        self._log_step(step, busy=total.cpu_s / wall / len(conns))
        return step

    def _collect(self, conns, timeout: float) -> Records:
        merged = Records()
        for records in self._ask(conns, ("collect",), timeout):
            merged.merge(records)
        return merged

    def _measure(self, conns, timeout: float):
        """Windows until the last ``stable_windows`` agree or ``max_windows`` ran; a window is
        extended (up to 4x) until it holds ``min_window_requests`` answers."""
        opts = self.options
        windows: list[Window] = []
        window_records: list[Records] = []
        counters = [read_counters(self._client, self.stats_models)]
        t_prev = time.perf_counter()
        while len(windows) < opts.max_windows and not is_stable(windows, opts.stable_windows, opts.tolerance):
            time.sleep(opts.window_s)
            merged = self._collect(conns, timeout)
            while (
                merged.completed < opts.min_window_requests
                and time.perf_counter() - t_prev < 4 * opts.window_s
            ):
                time.sleep(min(0.5, opts.window_s))
                merged.merge(self._collect(conns, timeout))
            now = time.perf_counter()
            counters.append(read_counters(self._client, self.stats_models))
            windows.append(window_of(merged.latencies_s, sum(merged.errors.values()), now - t_prev))
            window_records.append(merged)
            t_prev = now
        return windows, window_records, counters

    def _log_step(self, step: StepResult, busy: float) -> None:
        if busy > 0.8:  # CPU-seconds per second per load worker
            log.warning(
                "load workers were %.0f%% busy: the harness may be the bottleneck; add --workers", 100 * busy
            )
        log.info(
            "step %s=%d: %.1f req/s, p99 %.1f ms, %d errors, %s",
            "streams" if step.streams else "c",
            step.concurrency,
            step.throughput,
            step.latency.p99,
            step.error_count,
            "stable" if step.stable else "not stable",
        )
