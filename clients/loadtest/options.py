"""Options of a load test: frozen, checked on construction, built by the CLI or by `percept.bench`."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from clients.options import ClientOptions, TlsOptions
from serving.errors import SpecError

ARRIVALS = ("constant", "poisson")
SLO_SCOPES = ("any", "last")
SHARED_MEMORY = ("none", "system")
ENCODINGS = ("raw", "jpeg", "png")


def parse_concurrency(text: str) -> tuple[int, ...]:
    """``"1:32:x2"`` -> 1,2,4,...,32; ``"1:8:+2"`` -> 1,3,5,7; ``"1,2,8"`` -> 1,2,8; ``"4"`` -> 4."""
    text = text.strip()
    match = re.fullmatch(r"(\d+):(\d+):([x+*])(\d+)", text)
    if match:
        start, stop, op, step = int(match[1]), int(match[2]), match[3], int(match[4])
        if start < 1 or stop < start:
            raise SpecError(f"concurrency range {text!r}: need 1 <= start <= stop")
        if (op in "x*" and step < 2) or (op == "+" and step < 1):
            raise SpecError(f"concurrency range {text!r}: step must grow (x2 or more, +1 or more)")
        values, value = [], start
        while value <= stop:
            values.append(value)
            value = value * step if op in "x*" else value + step
        return tuple(values)
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SpecError(f"concurrency {text!r}: expected a list like 1,2,8 or a range like 1:32:x2") from None
    if not values or min(values) < 1:
        raise SpecError(f"concurrency {text!r}: values must be integers >= 1")
    return tuple(values)


@dataclass(frozen=True)
class LoadTestOptions:
    """One load test: a sweep of steps (concurrency levels, camera stream counts, or one request
    rate) against models.

    Streams mode (``streams`` set): each step runs that many camera streams, each sending
    ``fps`` frames per second on its own clock, open loop; latency is measured from each frame's
    scheduled send time and an answer later than ``deadline_ms`` (default one frame period) is late.

    ``models`` holds one model name, or several: then every frame is sent to each of them in turn
    and one *unit* (the thing counted as a request) is the whole round (used to serve one frame
    through several single-task networks).
    """

    url: str
    models: tuple[str, ...]
    concurrency: tuple[int, ...] = (1,)
    rate: float | None = None  # requests/s; set -> open-loop request-rate mode, one step
    streams: tuple[int, ...] = ()  # camera streams per step; set -> streams mode
    fps: float = 10.0  # streams mode: frames per second of every stream
    deadline_ms: float | None = None  # streams mode: an answer past this is late; None: 1000 / fps
    arrivals: str = "constant"
    # rate mode: requests in flight beyond this are dropped and counted; streams mode: per stream
    max_outstanding: int = 64
    workers: int = 2  # load-generating processes
    warmup_s: float = 2.0
    window_s: float = 3.0
    max_windows: int = 5
    stable_windows: int = 3  # consecutive windows that must agree
    tolerance: float = 0.10  # throughput and p95 within this fraction of their mean
    # a window is extended (up to 4x window_s) until it holds this many answers, so that slow
    # steps still get percentiles from more than a handful of requests
    min_window_requests: int = 10
    request_timeout_s: float = 30.0
    shared_memory: str = "none"  # "system": inputs travel in system shared memory
    encoding: str = "raw"  # ensembles: raw HxWx3 frames, or JPEG/PNG bytes
    seed: int = 0
    slo_p99_ms: float | None = None
    slo_scope: str = "any"
    extra_stats_models: tuple[str, ...] = field(default_factory=tuple)
    tls: TlsOptions | None = None  # TLS / mutual TLS towards the server
    # gRPC headers of every call, e.g. serving.security.admin_headers(key): the statistics and
    # shared-memory protocols the test needs may be restricted (`percept serve --admin-key`)
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def connection(self) -> ClientOptions:
        """How the runner and each load worker reach the server."""
        return ClientOptions(
            url=self.url,
            tls=self.tls,
            headers=self.headers,
            timeout_s=self.request_timeout_s,
            shared_memory=self.shared_memory != "none",
        )

    def described(self) -> dict:
        """The options as the result's JSON records them: TLS files by path, headers by name only
        (their values are keys)."""
        data = asdict(self)
        data["tls"] = self.tls.paths() if self.tls else None
        data["headers"] = [name for name, _ in self.headers]
        return data

    def __post_init__(self) -> None:
        if isinstance(self.headers, dict):  # accept a dict, as ClientOptions does
            object.__setattr__(self, "headers", tuple(self.headers.items()))
        if not self.url or ":" not in self.url:
            raise SpecError(f"url {self.url!r}: expected host:port of Triton's gRPC endpoint")
        if not self.models or any(not m for m in self.models):
            raise SpecError("name at least one model")
        if not self.concurrency or min(self.concurrency) < 1:
            raise SpecError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.rate is not None:
            if self.rate <= 0:
                raise SpecError(f"rate must be > 0 requests/s, got {self.rate}")
            if len(self.models) > 1:
                raise SpecError("request-rate mode drives one model; give a single --model")
        if self.streams:
            if min(self.streams) < 1:
                raise SpecError(f"streams must be >= 1, got {self.streams}")
            if self.rate is not None:
                raise SpecError("give either a request rate or a number of streams, not both")
            if len(self.models) > 1:
                raise SpecError("streams mode drives one model; give a single --model")
        if self.fps <= 0:
            raise SpecError(f"fps must be > 0 frames/s, got {self.fps}")
        if self.deadline_ms is not None and self.deadline_ms <= 0:
            raise SpecError(f"deadline must be > 0 ms, got {self.deadline_ms}")
        if self.arrivals not in ARRIVALS:
            raise SpecError(f"arrivals must be one of {ARRIVALS}, got {self.arrivals!r}")
        if self.workers < 1:
            raise SpecError(f"workers must be >= 1, got {self.workers}")
        if self.max_outstanding < 1:
            raise SpecError(f"max_outstanding must be >= 1, got {self.max_outstanding}")
        if self.warmup_s < 0 or self.window_s <= 0:
            raise SpecError("warm-up must be >= 0 s and the window > 0 s")
        if self.stable_windows < 1 or self.max_windows < self.stable_windows:
            raise SpecError(
                f"need 1 <= stable_windows ({self.stable_windows}) <= max_windows ({self.max_windows})"
            )
        if self.min_window_requests < 0:
            raise SpecError(f"min_window_requests must be >= 0, got {self.min_window_requests}")
        if not 0 < self.tolerance < 1:
            raise SpecError(f"tolerance must be a fraction in (0, 1), got {self.tolerance}")
        if self.request_timeout_s <= 0:
            raise SpecError("request timeout must be > 0 s")
        if self.shared_memory not in SHARED_MEMORY:
            raise SpecError(f"shared memory must be one of {SHARED_MEMORY}, got {self.shared_memory!r}")
        if self.encoding not in ENCODINGS:
            raise SpecError(f"encoding must be one of {ENCODINGS}, got {self.encoding!r}")
        if self.slo_p99_ms is not None and self.slo_p99_ms <= 0:
            raise SpecError(f"SLO p99 must be > 0 ms, got {self.slo_p99_ms}")
        if self.slo_scope not in SLO_SCOPES:
            raise SpecError(f"SLO scope must be one of {SLO_SCOPES}, got {self.slo_scope!r}")
        # last, so that the checks above name this test's own fields: ClientOptions checks TLS,
        # headers and shared memory together
        self.connection  # noqa: B018

    @property
    def steps(self) -> tuple[int, ...]:
        """Concurrency per step; streams per step; in rate mode one step whose value is the in-flight cap."""
        if self.streams:
            return self.streams
        return (self.max_outstanding,) if self.rate is not None else self.concurrency

    @property
    def mode(self) -> str:
        if self.streams:
            return "streams"
        return "rate" if self.rate is not None else "concurrency"

    @property
    def deadline_s(self) -> float:
        """Streams mode: when an answer is late (one frame period unless ``deadline_ms`` says)."""
        return self.deadline_ms / 1e3 if self.deadline_ms is not None else 1.0 / self.fps
