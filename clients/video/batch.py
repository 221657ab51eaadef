"""`percept video`'s whole run: the models checked against the inputs before the first frame, then
every input on the local engine (this process: several at once, each an InputRun of
clients.video.run) or on the Ray engine (clients.video.ray_engine), and run.json."""

from __future__ import annotations

import asyncio
import time

from clients.video.backends import check_models, make_backend
from clients.video.options import VideoOptions
from clients.video.progress import Bars
from clients.video.report import InputResult, RunReport, write_json
from clients.video.run import InputRun
from clients.video.sources import InputSource, discover
from serving.errors import SpecError


async def _run(sources: list[InputSource], options: VideoOptions) -> RunReport:
    t0 = time.perf_counter()
    backend = make_backend(
        options.backend, options.client, options.fusion_model, options.onnx, options.fusion_onnx
    )
    bars = Bars(options.progress, options.parallel_inputs)
    slots: asyncio.Queue[int] = asyncio.Queue()
    for s in range(options.parallel_inputs):
        slots.put_nowait(s)

    async def one(source: InputSource) -> InputResult:
        slot = await slots.get()
        try:
            return await InputRun(source, options, backend, bars, slot).run()
        finally:
            slots.put_nowait(slot)

    try:
        results = await asyncio.gather(*(one(s) for s in sources))
    finally:
        bars.finish()
        await backend.close()
    report = RunReport(list(results), options.out_dir, time.perf_counter() - t0)
    write_json(
        options.out_dir / "run.json",
        {
            "exit_code": report.exit_code,
            "seconds": round(report.seconds, 3),
            "frames_processed": report.frames_processed,
            "fps": round(report.fps, 3),
            "inputs": {
                r.source.name: {"status": r.status, "frames": r.frames, "errors": r.errors} for r in results
            },
        },
    )
    return report


def run_video(inputs: list[str], options: VideoOptions) -> RunReport:
    """Process every input; returns the report (its ``exit_code`` says whether all succeeded)."""
    sources = discover(inputs)
    if not sources:
        raise SpecError("no inputs given")
    check_models(sources, options)
    options.out_dir.mkdir(parents=True, exist_ok=True)
    if options.engine == "ray":
        from clients.video.ray_engine import run_ray

        return run_ray(sources, options)
    import cv2

    threads = cv2.getNumThreads()
    cv2.setNumThreads(options.opencv_threads)
    try:
        return asyncio.run(_run(sources, options))
    finally:
        cv2.setNumThreads(threads)
