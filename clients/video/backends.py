"""Where `percept video` sends its frames: the Triton server (asyncio gRPC client) or ONNX Runtime
in-process (`--backend local`). Both return the same PerceptionResult for the same frame."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from clients.options import ClientOptions, RetryPolicy
from clients.results import PerceptionResult
from clients.served import MisuseError, check_lidar_use, check_use
from clients.stagecpu import StageCpu
from clients.video.options import RESUMABLE_ERRORS, VideoOptions
from clients.video.sources import FrameItem, InputSource
from serving.errors import SpecError
from serving.spec import ModelSpec


class TritonBackend:
    """One asyncio client per model (camera ensemble, fusion ensemble), made on first use."""

    def __init__(self, options: ClientOptions, fusion_model: str) -> None:
        self.options = options
        self.fusion_model = fusion_model
        self._clients: dict[bool, Any] = {}

    def model_name(self, fusion: bool) -> str:
        return self.fusion_model if fusion else self.options.model

    def _client(self, fusion: bool):
        from clients.aio import AsyncPerceptionClient

        if fusion not in self._clients:
            self._clients[fusion] = AsyncPerceptionClient(
                options=replace(self.options, model=self.model_name(fusion))
            )
        return self._clients[fusion]

    async def prepare(self, fusion: bool) -> ModelSpec:
        """Read the served model's spec (its heads decide what is drawn and written), refusing a
        model that cannot take these inputs (clients.served.check_use)."""
        client = self._client(fusion)
        info = await client.model_info()
        try:
            check_use(info, self.options.raw, lidar=fusion)
        except MisuseError:
            check_use(info, self.options.raw, lidar=fusion, served=await client.served())
            raise
        return info.spec

    async def infer(self, item: FrameItem, fusion: bool, cpu: StageCpu | None = None) -> PerceptionResult:
        return await self._client(fusion).infer(
            frame=item.image, points=item.points, projection=item.projection, cpu=cpu
        )

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()


class LocalBackend:
    """ONNX Runtime in this process, on a small thread pool (ORT releases the GIL while it runs)."""

    def __init__(self, onnx: Path | None, fusion_onnx: Path | None, threads: int = 2) -> None:
        self._paths = {False: onnx, True: fusion_onnx}
        self._models: dict[bool, Any] = {}
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ort")

    def model_name(self, fusion: bool) -> str:
        path = self._paths[fusion]
        return str(path) if path else "(none)"

    def _model(self, fusion: bool):
        from clients.local import LocalModel

        if fusion not in self._models:
            path = self._paths[fusion]
            if path is None:
                flag = "--fusion-onnx" if fusion else "--onnx"
                raise SpecError(f"--backend local needs {flag} PATH for this input")
            self._models[fusion] = LocalModel(path)
        return self._models[fusion]

    async def prepare(self, fusion: bool) -> ModelSpec:
        model = await asyncio.get_running_loop().run_in_executor(self._pool, self._model, fusion)
        check_lidar_use(self.model_name(fusion), model.spec, lidar=fusion)  # e.g. --onnx a fusion model
        return model.spec

    async def infer(self, item: FrameItem, fusion: bool, cpu: StageCpu | None = None) -> PerceptionResult:
        """``cpu`` is not split here: ONNX Runtime's threads count as the run's ``other``."""
        model = self._model(fusion)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._pool, model.infer, None, item.image, item.points, item.projection
        )

    async def close(self) -> None:
        self._pool.shutdown(wait=True)


def make_backend(kind: str, client: ClientOptions, fusion_model: str, onnx, fusion_onnx):
    if kind == "triton":
        return TritonBackend(client, fusion_model)
    if kind == "local":
        return LocalBackend(onnx, fusion_onnx)
    raise SpecError(f"backend must be 'triton' or 'local', got {kind!r}")


def check_models(sources: list[InputSource], options: VideoOptions) -> None:
    """Refuse, before the first frame, a run whose served models cannot take its inputs: a model
    not served (ModelNotServedError, listing those that are), a raw network without --raw or a
    pipeline with it, a fusion pipeline for videos or images, a camera one for KITTI sequences
    (MisuseError). A server that does not answer now is not waited for here: the run waits for it
    (and reports it) as it would anyway, and each input checks its model again before its frames."""
    if options.backend != "triton":
        return
    from clients.client import PerceptionClient

    for fusion in sorted({s.fusion for s in sources}):
        model = options.fusion_model if fusion else options.client.model
        once = replace(options.client, model=model, retry=RetryPolicy(max_attempts=1), shared_memory=False)
        try:
            with PerceptionClient(options=once) as client:
                client.check_use(lidar=fusion)
        except RESUMABLE_ERRORS:
            return
