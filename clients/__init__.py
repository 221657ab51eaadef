"""Torch-free clients: gRPC client library, batch video processing, load-test harness.

``import clients`` needs numpy and OpenCV only; tritonclient is imported when a client is made.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clients.errors import (
    DeadlineExceededError,
    InvalidRequestError,
    ModelNotFoundError,
    PermissionDeniedError,
    RequestTooLargeError,
    ResourceExhaustedError,
    ServerError,
    ServerUnavailableError,
)
from clients.options import ClientOptions, RetryPolicy, TlsOptions
from clients.results import Detection, PerceptionResult

if TYPE_CHECKING:
    from clients.aio import AsyncPerceptionClient
    from clients.client import PerceptionClient

__all__ = [
    "AsyncPerceptionClient",
    "ClientOptions",
    "DeadlineExceededError",
    "Detection",
    "InvalidRequestError",
    "ModelNotFoundError",
    "PerceptionClient",
    "PerceptionResult",
    "PermissionDeniedError",
    "RequestTooLargeError",
    "ResourceExhaustedError",
    "RetryPolicy",
    "ServerError",
    "ServerUnavailableError",
    "TlsOptions",
]


def __getattr__(name: str):
    # the client classes pull in tritonclient only when asked for
    if name == "PerceptionClient":
        from clients.client import PerceptionClient

        return PerceptionClient
    if name == "AsyncPerceptionClient":
        from clients.aio import AsyncPerceptionClient

        return AsyncPerceptionClient
    raise AttributeError(f"module 'clients' has no attribute {name!r}")
