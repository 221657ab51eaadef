"""`percept compare --engine ray`: a fleet's logs. The inference, the part that costs, is the video
engine's: each side that is a model (an ONNX file or a served pipeline) is run over the inputs by
`percept video --engine ray --save-maps` into ``OUT/runs/<side>/`` (the same units, journal and
run.json: exactly once, and the same command run again skips what is committed); a side that is a
run folder is used as it is. The two run folders are then compared here, frame by frame, from their
JSONL and maps: no model runs in this step.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from clients.compare.sides import SideError, parse_side
from clients.options import ClientOptions
from clients.video.options import VideoOptions

log = logging.getLogger(__name__)

RUNS = "runs"


def _video_options(
    role: str, text: str, out: Path, url: str | None, client: ClientOptions, options
) -> VideoOptions | None:
    """The `percept video` run of a side, or None for a side that is already a run folder."""
    ref = parse_side(role, text, url)
    common = dict(
        out_dir=out,
        write_video=False,
        save_maps=True,
        max_frames=options.max_frames,
        progress=options.progress,
        engine="ray",
        ray=options.ray,
    )
    if ref.kind == "run":
        return None
    if ref.kind == "onnx":
        from serving.onnx_meta import read_spec

        fusion = read_spec(ref.path).fusion
        return VideoOptions(
            backend="local",
            onnx=None if fusion else ref.path,
            fusion_onnx=ref.path if fusion else None,
            **common,
        )
    served = replace(client, url=ref.url, model=ref.model)
    return VideoOptions(backend="triton", client=served, fusion_model=ref.model, **common)


def run_sides(inputs: list[str], options) -> tuple[str, str]:
    """Run the model sides of ``options`` (CompareOptions) on Ray; returns the two run folders."""
    from clients.video import run_video
    from clients.video.ray_pool import connect, import_ray

    runs = {}
    plans = {}
    for role, text in (("baseline", options.baseline), ("candidate", options.candidate)):
        video = _video_options(
            role, text, options.out_dir / RUNS / role, options.url, options.client, options
        )
        plans[role] = video
        runs[role] = text if video is None else str(video.out_dir)
    first = next((v for v in plans.values() if v is not None), None)
    if first is None:
        return runs["baseline"], runs["candidate"]
    owned = connect(first)  # one runtime for both sides' runs
    try:
        for role, video in plans.items():
            if video is None:
                continue
            log.info("%s: percept video --engine ray --save-maps into %s", role, video.out_dir)
            report = run_video(inputs, video)
            bad = [r for r in report.results if r.status != "complete" or r.errors]
            if bad:
                r = bad[0]
                why = r.message or f"{r.errors} frame(s) failed"
                raise SideError(f"{role} run of {r.source.name} did not complete ({r.status}): {why}")
    finally:
        if owned:
            import_ray().shutdown()
    return runs["baseline"], runs["candidate"]
