"""Client-side errors: gRPC status codes mapped to a small hierarchy under serving.errors.ClientError.

The mapping is by status code, not message text, so a server that rewords its messages cannot change
which error a caller catches (and which errors are retried). One exception: Triton's refusal of a
restricted protocol comes as UNAVAILABLE and is told by its message (see ``_RESTRICTED``).
"""

from __future__ import annotations

from serving.errors import ClientError
from serving.security import ADMIN_KEY_ENV


class InvalidRequestError(ClientError):
    """The server rejected the request itself (INVALID_ARGUMENT, OUT_OF_RANGE, FAILED_PRECONDITION).
    Never retried: the same request fails the same way."""


class RequestTooLargeError(InvalidRequestError):
    """The request exceeds the client-side size limit; raised before anything is sent."""


class ServerUnavailableError(ClientError):
    """The server could not be reached (UNAVAILABLE); retried with backoff before this is raised."""


class DeadlineExceededError(ClientError):
    """The call did not finish within its deadline (DEADLINE_EXCEEDED)."""


class ModelNotFoundError(ClientError):
    """The model or version is not loaded on the server (NOT_FOUND)."""


class ResourceExhaustedError(ClientError):
    """The server refused the request for lack of resources, e.g. a full queue (RESOURCE_EXHAUSTED)."""


class PermissionDeniedError(ClientError):
    """Authentication or authorisation failed (UNAUTHENTICATED, PERMISSION_DENIED)."""


class CancelledError(ClientError):
    """The call was cancelled (CANCELLED)."""


class ServerError(ClientError):
    """The server failed while handling the request (INTERNAL, UNKNOWN and anything unmapped)."""


_BY_STATUS: dict[str, type[ClientError]] = {
    "INVALID_ARGUMENT": InvalidRequestError,
    "OUT_OF_RANGE": InvalidRequestError,
    "FAILED_PRECONDITION": InvalidRequestError,
    "UNAVAILABLE": ServerUnavailableError,
    "DEADLINE_EXCEEDED": DeadlineExceededError,
    "NOT_FOUND": ModelNotFoundError,
    "RESOURCE_EXHAUSTED": ResourceExhaustedError,
    "UNAUTHENTICATED": PermissionDeniedError,
    "PERMISSION_DENIED": PermissionDeniedError,
    "CANCELLED": CancelledError,
}


def status_name(status: object) -> str:
    """Normalise a status as tritonclient gives it ('StatusCode.UNAVAILABLE', a grpc.StatusCode, None)."""
    if status is None:
        return "UNKNOWN"
    name = getattr(status, "name", None) or str(status)
    return name.rsplit(".", 1)[-1].upper()


# Triton answers a request to a restricted protocol without its key with UNAVAILABLE (grpc_server.cc,
# "This protocol is restricted, expecting header ..."): retrying cannot help, so this one message is
# told apart from a server that is really away
_RESTRICTED = "This protocol is restricted"


def from_status(status: object, message: str) -> ClientError:
    """The ClientError subclass for a gRPC status, carrying the server's message and the status name."""
    name = status_name(status)
    cls = _BY_STATUS.get(name, ServerError)
    if name == "UNAVAILABLE" and _RESTRICTED in message:
        hint = f"pass its key: --admin-key or {ADMIN_KEY_ENV} on the command line, headers= in the library"
        cls, message = PermissionDeniedError, f"{message} (the server restricts this protocol: {hint})"
    error = cls(f"{name}: {message}")
    error.status = name  # type: ignore[attr-defined]
    return error


def from_triton_exception(exc: Exception) -> ClientError:
    """Map a tritonclient InferenceServerException (or a raw grpc.RpcError) by its status code."""
    code = getattr(exc, "code", None)
    if callable(code):  # grpc.RpcError
        details = exc.details() if hasattr(exc, "details") else str(exc)  # type: ignore[attr-defined]
        return from_status(code(), str(details))
    status = exc.status() if hasattr(exc, "status") else None  # type: ignore[attr-defined]
    message = exc.message() if hasattr(exc, "message") else str(exc)  # type: ignore[attr-defined]
    return from_status(status, str(message))
