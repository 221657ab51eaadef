"""Requests serialized once, sent as bytes: the load worker's wire path.

``tritonclient``'s ``infer`` rebuilds and re-serializes the ``ModelInferRequest`` on every call
(a copy of every input tensor, twice) and parses every response; at 384x640 raw frames that is
most of the 2 ms of client CPU a request used to cost. Here tritonclient builds each request once
(``_get_inference_request``, the function its ``infer`` calls), it is serialized once, and a gRPC
method with no serializers sends those bytes as they are and hands back the response's bytes
unparsed: the server's statistics, not a parse of every answer, confirm what was answered.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import threading
from collections.abc import Iterator

from clients.errors import status_name
from clients.options import ClientOptions

log = logging.getLogger(__name__)

# glibc: requests and responses are large (a 384x640 frame is 737 kB); above its default
# threshold (128 kB) every such buffer is a fresh mmap and munmap, and its page faults cost more
# kernel time than the copy itself. Keep them on the heap, and the heap from being trimmed.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_KEEP_BYTES = 512 << 20


def keep_large_buffers_on_heap() -> bool:
    """Ask glibc's malloc to reuse large buffers instead of mapping each anew (False elsewhere)."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, _KEEP_BYTES)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, 2 * _KEEP_BYTES)
        )
    except (OSError, AttributeError):  # not glibc
        return False


# grpcio's EventEngine client runs a channel's reads and writes on its own threads, each woken per
# request: at 10-fps streams ~14 context switches per 384x640 frame against ~7 on the legacy path,
# where the thread waiting on the completion queue does the I/O (A/B in one run, cam_n, 1-8
# streams: 1.8-2.1 ms of CPU per request against 2.0-2.5 ms). An experiment of grpcio's, so it
# is read when gRPC starts, from the environment.
GRPC_EXPERIMENTS = "GRPC_EXPERIMENTS"
_LEGACY_CLIENT_IO = "-event_engine_client"


def prefer_legacy_client_io() -> None:
    """Before gRPC starts in this process: its client I/O on the threads that wait for it (a
    ``GRPC_EXPERIMENTS`` already set is left as it is)."""
    os.environ.setdefault(GRPC_EXPERIMENTS, _LEGACY_CLIENT_IO)


def _method_path(name: str) -> str:
    """e.g. ``/inference.GRPCInferenceService/ModelInfer``, read from tritonclient's service descriptor."""
    from tritonclient.grpc import service_pb2

    method = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods_by_name[name]
    return f"/{method.containing_service.full_name}/{method.name}"


def serialized_request(model: str, inputs: list) -> bytes:
    """One ModelInferRequest for ``model`` with tritonclient ``InferInput``s, as bytes."""
    from tritonclient.grpc._utils import _get_inference_request

    request = _get_inference_request(
        model_name=model,
        inputs=inputs,
        model_version="",
        request_id="",
        outputs=None,
        sequence_id=0,
        sequence_start=False,
        sequence_end=False,
        priority=0,
        timeout=None,
        parameters=None,
    )
    return request.SerializeToString()


def parse_response(data: bytes):
    """A ModelInferResponse from the bytes ``Sender`` returns (for checks, not the hot path)."""
    from tritonclient.grpc import service_pb2

    return service_pb2.ModelInferResponse.FromString(data)


class Sender:
    """A gRPC channel to Triton (tritonclient's message-size limits) with the raw ModelInfer method."""

    def __init__(self, connection: ClientOptions) -> None:
        import grpc
        from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE

        options = [
            ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
            ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
        ]
        url, tls = connection.url, connection.tls
        if tls is None:
            self._channel = grpc.insecure_channel(url, options=options)
        else:
            self._channel = grpc.secure_channel(url, tls.channel_credentials(), options=options)
        self._metadata = connection.headers or None  # gRPC metadata: (name, value) pairs
        # no serializers: bytes in, bytes out
        self._infer = self._channel.unary_unary(_method_path("ModelInfer"))
        # grpcio runs a channel's callbacks on a thread that exits whenever no call is in flight
        # and is started anew by the next call (grpc/_channel.py, _run_channel_spin_thread): for
        # cameras at 10 fps that is a thread per frame, ~0.3 ms of CPU each here. One idle
        # ModelStreamInfer stream, which sends nothing and is cancelled by close(), keeps it.
        self._closing = threading.Event()
        self._keeper = self._channel.stream_stream(_method_path("ModelStreamInfer"))(
            self._nothing(), metadata=self._metadata
        )

    def _nothing(self) -> Iterator[bytes]:
        self._closing.wait()
        yield from ()

    def call(self, request: bytes, timeout_s: float) -> bytes:
        """Blocking; raises ``grpc.RpcError``."""
        return self._infer(request, timeout=timeout_s, metadata=self._metadata)

    def future(self, request: bytes, timeout_s: float):
        """A ``grpc.Future``; ``add_done_callback`` sees it done (``exception()`` None on success)."""
        return self._infer.future(request, timeout=timeout_s, metadata=self._metadata)

    def close(self) -> None:
        self._closing.set()
        self._channel.close()


def rpc_status(exc: BaseException) -> str:
    """The gRPC status of a failed call, e.g. ``UNAVAILABLE`` (never the message text)."""
    code = getattr(exc, "code", None)
    return status_name(code() if callable(code) else None)


def future_status(future) -> str | None:
    """None when a ``Sender.future`` call succeeded, else its gRPC status name."""
    if future.cancelled():
        return "CANCELLED"
    error = future.exception()
    return None if error is None else rpc_status(error)
