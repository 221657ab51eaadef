"""asyncio gRPC client (tritonclient.grpc.aio): the same requests, results and errors as
clients.client.PerceptionClient, for many requests in flight from one thread (`percept video`).

With ``shared_memory=True`` each request in flight uses its own registered region (a pool of at
most ``shm_slots``), reused across requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace

import numpy as np

from clients import _core
from clients.client import retry_delay
from clients.errors import ClientError, ModelNotFoundError
from clients.options import ClientOptions
from clients.results import PerceptionResult
from clients.served import Served, index_entries, not_served_error, ready_names, served_from
from clients.shm import AsyncSharedMemoryPool
from clients.stagecpu import StageCpu
from serving.errors import SpecError
from serving.spec import ModelSpec

log = logging.getLogger(__name__)


class AsyncPerceptionClient:
    def __init__(
        self, url: str | None = None, options: ClientOptions | None = None, shm_slots: int = 16, **overrides
    ) -> None:
        options = options or ClientOptions()
        if url is not None:
            overrides["url"] = url
        self.options = replace(options, **overrides) if overrides else options
        if shm_slots < 1:
            raise SpecError(f"shm_slots must be >= 1, got {shm_slots}")
        self._aio = _core.import_grpc_aio()
        self._client = _core.triton_client(self.options, self._aio)  # every call carries options.headers
        self._info: dict[str, _core.ModelInfo] = {}
        self._shm = (
            AsyncSharedMemoryPool(self._client, self._call, shm_slots) if self.options.shared_memory else None
        )

    async def _call(self, fn, *args, **kwargs):
        policy = self.options.retry
        for attempt in range(policy.max_attempts):
            try:
                return await fn(*args, client_timeout=self.options.timeout_s, **kwargs)
            except Exception as exc:
                await asyncio.sleep(retry_delay(exc, attempt, policy))
        raise AssertionError("unreachable")

    async def _config(self, model: str) -> dict:
        return (await self._call(self._client.get_model_config, model, as_json=True))["config"]

    async def model_info(self, model: str | None = None) -> _core.ModelInfo:
        """As PerceptionClient.model_info: a model not served raises ModelNotServedError naming
        what is."""
        name = model or self.options.model
        if name not in self._info:
            try:
                configs = {name: await self._config(name)}
                for step in _core.ensemble_steps(configs[name]):
                    configs[step] = await self._config(step)
            except ModelNotFoundError as exc:
                raise not_served_error(name, self.options.url, await self.served()) from exc
            self._info[name] = _core.model_info_from_configs(name, configs)
        return self._info[name]

    async def served(self) -> Served | None:
        """As PerceptionClient.served (clients.served.fetch_served, with awaited calls)."""
        try:
            index = index_entries(await self._call(self._client.get_model_repository_index, as_json=True))
            return served_from(index, {n: await self._config(n) for n in ready_names(index)})
        except ClientError as exc:
            log.debug("cannot list the served models: %s", exc)
            return None

    async def spec(self) -> ModelSpec:
        return (await self.model_info()).spec

    async def is_ready(self) -> bool:
        try:
            return bool(await self._call(self._client.is_server_ready))
        except ClientError:
            return False

    async def infer(
        self,
        image: bytes | None = None,
        frame: np.ndarray | None = None,
        points: np.ndarray | None = None,
        projection: np.ndarray | None = None,
        cpu: StageCpu | None = None,
    ) -> PerceptionResult:
        """Infer one image: ``image`` encoded bytes or ``frame`` an HxWx3 uint8 **RGB** array.
        ``cpu``: where the CPU of building the request and of reading the reply is counted."""
        info = await self.model_info()
        with cpu.stage("request") if cpu else contextlib.nullcontext():
            inputs, requested, prepared, arrays = self._request(info, image, frame, points, projection)
        region = None
        if self._shm is not None:
            region = await self._shm.acquire(sum(a.nbytes for a in arrays))
            region.bind(inputs, arrays)
        try:
            reply = await self._call(self._client.infer, prepared.model, inputs, outputs=requested)
        finally:
            if region is not None:
                self._shm.release(region)  # type: ignore[union-attr]
        with cpu.stage("postprocess") if cpu else contextlib.nullcontext():
            outputs = {n: reply.as_numpy(n) for n in _core.wanted_outputs(info)}
            return _core.parse(info, self.options, prepared, outputs)

    def _request(self, info: _core.ModelInfo, image, frame, points, projection):
        """The request's inputs (their data set unless shared memory carries it) and outputs."""
        from tritonclient.utils import np_to_triton_dtype

        prepared = _core.prepare(info, self.options, image, frame, points, projection)
        arrays = list(prepared.arrays.values())
        inputs = [
            self._aio.InferInput(name, list(arr.shape), np_to_triton_dtype(arr.dtype))
            for name, arr in prepared.arrays.items()
        ]
        requested = [self._aio.InferRequestedOutput(n) for n in _core.wanted_outputs(info)]
        if self._shm is None:
            for inp, arr in zip(inputs, arrays, strict=True):
                inp.set_data_from_numpy(arr)
        return inputs, requested, prepared, arrays

    async def close(self) -> None:
        try:
            if self._shm is not None:
                await self._shm.close()
        finally:
            await self._client.close()

    async def __aenter__(self) -> AsyncPerceptionClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
