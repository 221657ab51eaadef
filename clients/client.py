"""Synchronous gRPC client for the served perception models (tritonclient.grpc, imported lazily).

    with PerceptionClient("127.0.0.1:8001") as client:
        result = client.infer(frame=rgb)          # HxWx3 uint8 RGB, any size
        result = client.infer(image=jpeg_bytes)   # encoded JPEG/PNG
        result = client.infer(frame=rgb, points=pts, projection=P)  # fusion model

Every call has a deadline (``timeout_s``); UNAVAILABLE is retried with jittered exponential backoff,
nothing else is; errors are mapped by gRPC status code to clients.errors.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import numpy as np

from clients import _core
from clients.errors import ClientError, ModelNotFoundError, ServerUnavailableError, from_triton_exception
from clients.options import ClientOptions, RetryPolicy
from clients.results import PerceptionResult
from clients.served import MisuseError, Served, check_use, fetch_served, not_served_error
from clients.shm import SharedMemoryInputs
from serving.spec import ModelSpec

log = logging.getLogger(__name__)


def _to_client_error(exc: Exception) -> ClientError | None:
    from tritonclient.utils import InferenceServerException

    if isinstance(exc, InferenceServerException):
        return from_triton_exception(exc)
    try:
        import grpc
    except ImportError:
        return None
    if isinstance(exc, grpc.RpcError):
        return from_triton_exception(exc)
    return None


def retry_delay(exc: Exception, attempt: int, policy: RetryPolicy) -> float:
    """Seconds to wait before retrying the RPC that raised ``exc``; raises when it must not be
    retried: the mapped ClientError (UNAVAILABLE only is retried, until the policy's attempts run
    out), or ``exc`` itself when it is not a gRPC error."""
    error = _to_client_error(exc)
    if error is None:
        raise exc
    if not isinstance(error, ServerUnavailableError) or attempt + 1 >= policy.max_attempts:
        raise error from None
    delay = policy.delay(attempt)
    log.warning("%s; retry %d/%d in %.2fs", error, attempt + 1, policy.max_attempts - 1, delay)
    return delay


class PerceptionClient:
    def __init__(self, url: str | None = None, options: ClientOptions | None = None, **overrides) -> None:
        options = options or ClientOptions()
        if url is not None:
            overrides["url"] = url
        self.options = replace(options, **overrides) if overrides else options
        self._grpcclient = _core.import_grpc()
        self._client = _core.triton_client(self.options)  # every call carries options.headers
        self._info: dict[str, _core.ModelInfo] = {}
        self._shm = SharedMemoryInputs(self._client, self._call) if self.options.shared_memory else None

    # --- plumbing -------------------------------------------------------------------------------
    def _call(self, fn, *args, **kwargs):
        """Run one RPC with the deadline, retrying UNAVAILABLE only."""
        policy = self.options.retry
        for attempt in range(policy.max_attempts):
            try:
                return fn(*args, client_timeout=self.options.timeout_s, **kwargs)
            except Exception as exc:
                time.sleep(retry_delay(exc, attempt, policy))
        raise AssertionError("unreachable")

    def _config(self, model: str) -> dict:
        return self._call(self._client.get_model_config, model, as_json=True)["config"]

    def model_info(self, model: str | None = None) -> _core.ModelInfo:
        """The served model's description; a model the server does not have raises
        clients.served.ModelNotServedError naming the models it does serve."""
        name = model or self.options.model
        if name not in self._info:
            try:
                self._info[name] = _core.fetch_model_info(self._config, name)
            except ModelNotFoundError as exc:
                raise not_served_error(name, self.options.url, self.served()) from exc
        return self._info[name]

    def served(self) -> Served | None:
        """What the server serves (its READY pipelines and raw networks), or None when it will not
        say (e.g. its repository protocol is restricted): only error messages use it."""
        try:
            return fetch_served(
                lambda: self._call(self._client.get_model_repository_index, as_json=True), self._config
            )
        except ClientError as exc:
            log.debug("cannot list the served models: %s", exc)
            return None

    def check_use(self, lidar: bool | None = None, model: str | None = None) -> _core.ModelInfo:
        """The model's description, after refusing a use that cannot work (clients.served.check_use:
        raises MisuseError naming the fix). ``lidar``: whether the requests will carry points."""
        info = self.model_info(model)
        try:
            check_use(info, self.options.raw, lidar)
        except MisuseError:
            check_use(info, self.options.raw, lidar, self.served())  # raises again, naming the pipeline
            raise
        return info

    @property
    def spec(self) -> ModelSpec:
        return self.model_info().spec

    def is_ready(self) -> bool:
        try:
            return bool(self._call(self._client.is_server_ready))
        except ClientError:
            return False

    # --- inference ------------------------------------------------------------------------------
    def infer(
        self,
        image: bytes | None = None,
        frame: np.ndarray | None = None,
        points: np.ndarray | None = None,
        projection: np.ndarray | None = None,
    ) -> PerceptionResult:
        """Infer one image: ``image`` encoded bytes or ``frame`` an HxWx3 uint8 **RGB** array."""
        info = self.model_info()
        prepared = _core.prepare(info, self.options, image, frame, points, projection)
        outputs = self._infer_arrays(info, prepared)
        return _core.parse(info, self.options, prepared, outputs)

    def _infer_arrays(self, info: _core.ModelInfo, prepared: _core.Prepared) -> dict[str, np.ndarray]:
        from tritonclient.utils import np_to_triton_dtype

        g = self._grpcclient
        names = list(prepared.arrays)
        arrays = [prepared.arrays[n] for n in names]
        inputs = [
            g.InferInput(n, list(a.shape), np_to_triton_dtype(a.dtype))
            for n, a in zip(names, arrays, strict=True)
        ]
        wanted = _core.wanted_outputs(info)
        requested = [g.InferRequestedOutput(n) for n in wanted]
        lock = None
        if self._shm is not None:
            lock = self._shm.bind(inputs, arrays)
        else:
            for inp, arr in zip(inputs, arrays, strict=True):
                inp.set_data_from_numpy(arr)
        try:
            reply = self._call(self._client.infer, prepared.model, inputs, outputs=requested)
        finally:
            if lock is not None:
                lock.release()
        return {n: reply.as_numpy(n) for n in wanted}

    # --- lifetime -------------------------------------------------------------------------------
    def close(self) -> None:
        try:
            if self._shm is not None:
                self._shm.close()
        finally:
            self._client.close()

    def __enter__(self) -> PerceptionClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
