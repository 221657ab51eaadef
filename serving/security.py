"""The secure deployment profile of tritonserver: TLS / mutual TLS on gRPC, admin protocols behind
a key, no model control: the flags of Triton 2.51 that carry it (README "Secure deployment").

Triton checks a restricted protocol's key in a request header named ``triton-grpc-protocol-<key>``
and refuses a request without it with ``UNAVAILABLE "This protocol is restricted, expecting header
..."`` (grpc_server.cc); clients/errors.py maps that refusal to PermissionDeniedError, never retried.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from serving.errors import ServingError

# Triton's own names (--grpc-restricted-protocol); health, metadata and inference stay open
PROTOCOLS = (
    "health",
    "metadata",
    "inference",
    "shared-memory",
    "model-config",
    "model-repository",
    "statistics",
    "trace",
    "logging",
)
ADMIN_PROTOCOLS = ("model-repository", "model-config", "shared-memory", "statistics", "trace", "logging")
ADMIN_KEY_NAME = "admin-key"
ADMIN_KEY_ENV = "PERCEPT_ADMIN_KEY"  # where `percept serve` and the printed `docker run` read the key
GRPC_HEADER_PREFIX = "triton-grpc-protocol-"
ADMIN_HEADER = GRPC_HEADER_PREFIX + ADMIN_KEY_NAME
_KEY_VALUE = re.compile(r"[A-Za-z0-9._~+/=-]{16,}")


@dataclass(frozen=True)
class SecurityOptions:
    """``tls_cert`` + ``tls_key``: gRPC over TLS; ``tls_client_ca``: mutual TLS (clients must show a
    certificate signed by it); ``admin_key``: the ``restricted`` protocols need header
    ``ADMIN_HEADER: admin_key``. ``model_control``: False pins ``--model-control-mode=none`` (no
    load/unload over the API, whatever the key)."""

    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    admin_key: str | None = None
    restricted: tuple[str, ...] = ADMIN_PROTOCOLS
    model_control: bool = False

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ServingError("TLS needs both --tls-cert and --tls-key")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ServingError("mutual TLS (--tls-client-ca) needs --tls-cert and --tls-key")
        for name in ("tls_cert", "tls_key", "tls_client_ca"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ServingError(f"{name.replace('_', '-')} file not found: {path}")
        unknown = [p for p in self.restricted if p not in PROTOCOLS]
        if unknown:
            raise ServingError(f"unknown protocol(s) {unknown}: choose among {', '.join(PROTOCOLS)}")
        if self.admin_key is not None and not _KEY_VALUE.fullmatch(self.admin_key):
            raise ServingError(
                "the admin key must be at least 16 characters of letters, digits and ._~+/=- "
                "(it travels as a gRPC header value)"
            )

    def tritonserver_args(
        self, path: Callable[[Path], str] | None = None, key: str | None = None
    ) -> tuple[str, ...]:
        """The flags. ``path`` maps a certificate file to the path the server will open (default:
        the file here, resolved; a container's mount point for `docker run`); ``key`` stands in for
        the admin key (e.g. a shell reference to :data:`ADMIN_KEY_ENV`, so that no command line
        shows the key itself)."""
        where = path or (lambda p: str(Path(p).resolve()))
        args: list[str] = []
        if self.tls_cert is not None and self.tls_key is not None:
            args += [
                "--grpc-use-ssl=true",
                f"--grpc-server-cert={where(Path(self.tls_cert))}",
                f"--grpc-server-key={where(Path(self.tls_key))}",
            ]
        if self.tls_client_ca is not None:
            args += ["--grpc-use-ssl-mutual=true", f"--grpc-root-cert={where(Path(self.tls_client_ca))}"]
        if self.admin_key is not None and self.restricted:
            spec = f"{','.join(self.restricted)}:{ADMIN_KEY_NAME}={key or self.admin_key}"
            args += [f"--grpc-restricted-protocol={spec}", f"--http-restricted-api={spec}"]
        if not self.model_control:
            args.append("--model-control-mode=none")
        return tuple(args)


def admin_headers(key: str) -> dict[str, str]:
    """The gRPC headers a client sends to use the restricted protocols."""
    return {ADMIN_HEADER: key}
