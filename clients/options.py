"""Client options: frozen dataclasses checked on construction."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from serving.errors import SpecError
from serving.spec import ENSEMBLE_CAMERA

DEFAULT_URL = "127.0.0.1:8001"
DEFAULT_MAX_REQUEST_BYTES = 64 << 20  # Triton's default gRPC message limit is larger; this catches mistakes
# gRPC load-balancing policies (the channel's ``grpc.lb_policy_name``): round_robin spreads requests
# over every address the target resolves to (a headless Service's pods); pick_first pins one.
LB_POLICIES = ("round_robin", "pick_first")
# gRPC metadata (headers): lowercase names (``-bin`` ones carry bytes: not here), printable ASCII values
_HEADER_NAME = re.compile(r"[0-9a-z_.-]+")
_HEADER_VALUE = re.compile(r"[\x20-\x7e]*")


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of UNAVAILABLE only, with jittered exponential backoff.

    Attempt k (0-based) waits uniform(0.5, 1.0) * min(max_delay_s, base_delay_s * 2**k) before the
    next try; the jitter keeps many clients from hammering a restarting server in lock-step.
    """

    max_attempts: int = 5
    base_delay_s: float = 0.2
    max_delay_s: float = 5.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise SpecError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.base_delay_s < 0 or self.max_delay_s < self.base_delay_s:
            raise SpecError("need 0 <= base_delay_s <= max_delay_s")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        r = (rng or random).uniform(0.5, 1.0)
        return r * min(self.max_delay_s, self.base_delay_s * (2.0**attempt))


@dataclass(frozen=True)
class TlsOptions:
    """TLS towards the server: ``root_certificates`` verifies the server; ``private_key`` and
    ``certificate_chain`` (PEM files, both or neither) authenticate the client (mutual TLS)."""

    root_certificates: Path | None = None
    private_key: Path | None = None
    certificate_chain: Path | None = None

    def __post_init__(self) -> None:
        if (self.private_key is None) != (self.certificate_chain is None):
            raise SpecError("mutual TLS needs both private_key and certificate_chain")
        for name in ("root_certificates", "private_key", "certificate_chain"):
            value = getattr(self, name)
            if value is not None:
                path = Path(value)
                object.__setattr__(self, name, path)
                if not path.is_file():
                    raise SpecError(f"TLS {name} file not found: {path}")

    def channel_credentials(self):
        """grpc's channel credentials from these PEM files (for a channel that is not tritonclient's)."""
        import grpc

        def read(path: Path | None) -> bytes | None:
            return path.read_bytes() if path else None

        return grpc.ssl_channel_credentials(
            read(self.root_certificates), read(self.private_key), read(self.certificate_chain)
        )

    def paths(self) -> dict[str, str | None]:
        return {
            "root_certificates": str(self.root_certificates) if self.root_certificates else None,
            "private_key": str(self.private_key) if self.private_key else None,
            "certificate_chain": str(self.certificate_chain) if self.certificate_chain else None,
        }


@dataclass(frozen=True)
class ClientOptions:
    """How to reach the server and what to ask of it.

    ``model``: the ensemble (``perception`` / ``perception_fusion``) or, with ``raw=True``, a raw
    network model (``cam_n``) for which the client letterboxes and decodes itself.
    ``timeout_s``: the deadline of every call. ``max_request_bytes``: requests above it fail with
    RequestTooLargeError before anything is sent. ``shared_memory``: send inputs through system
    shared memory (server on the same host only).
    ``url``: ``host:port``, or any gRPC target: ``dns:///name:port`` (every A record of the name, e.g.
    a headless Kubernetes Service) or ``ipv4:10.0.0.1:8001,10.0.0.2:8001``. ``load_balancing``: one of
    LB_POLICIES; with round_robin each request goes to the next ready address, so a fleet behind
    one name shares the load per request, not per connection. Left as None: round_robin, or
    pick_first with ``shared_memory`` (a region is registered with one server, the one on this host).
    """

    url: str = DEFAULT_URL
    model: str = ENSEMBLE_CAMERA
    raw: bool = False
    timeout_s: float = 30.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    tls: TlsOptions | None = None
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    shared_memory: bool = False
    resize_to_source: bool = False
    load_balancing: str | None = None
    # gRPC headers sent with every call, e.g. serving.security.admin_headers(key) for a server whose
    # admin protocols (model-config, shared-memory, ...) are restricted (`percept serve --admin-key`)
    headers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.headers, dict):  # accept a dict; stored as pairs to stay hashable
            object.__setattr__(self, "headers", tuple(self.headers.items()))
        for name, value in self.headers:
            if not _HEADER_NAME.fullmatch(name) or name.endswith("-bin"):
                raise SpecError(f"header name {name!r}: gRPC takes lowercase letters, digits and -_. only")
            if not _HEADER_VALUE.fullmatch(value):
                raise SpecError(f"header {name!r}: its value must be printable ASCII")
        if not self.url or ":" not in self.url:
            raise SpecError(f"url must be host:port, got {self.url!r}")
        if self.load_balancing is not None and self.load_balancing not in LB_POLICIES:
            raise SpecError(f"load_balancing must be one of {LB_POLICIES}, got {self.load_balancing!r}")
        if self.shared_memory and self.lb_policy != "pick_first":
            raise SpecError(
                "shared memory regions are registered with one server: use load_balancing='pick_first' "
                "(the default with shared_memory=True)"
            )
        if self.timeout_s <= 0:
            raise SpecError(f"timeout_s must be > 0, got {self.timeout_s}")
        if self.max_request_bytes < 1:
            raise SpecError(f"max_request_bytes must be >= 1, got {self.max_request_bytes}")
        if self.shared_memory and self.tls is not None:
            raise SpecError("shared memory is for a server on this host; it makes no sense with TLS")

    @property
    def lb_policy(self) -> str:
        """The load-balancing policy the channel gets (``load_balancing`` or its default)."""
        if self.load_balancing is not None:
            return self.load_balancing
        return "pick_first" if self.shared_memory else "round_robin"
