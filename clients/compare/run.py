"""`percept compare`: a candidate model or engine against the baseline, on the inputs `percept video`
reads, head by head; the report and the gate.

Every frame is decoded once (clients.video.sources) and the same frame, with the same LiDAR points
for a fusion pipeline, goes to both sides. A frame that cannot be decoded is counted and reported,
never compared; an input that cannot be read fails the command with its one line.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from clients.compare import scenes
from clients.compare.agreement import InputAgreement
from clients.compare.gallery import Gallery
from clients.compare.gate import Failure, bounds_dict, check, load_bounds
from clients.compare.sides import RunSide, SideError, open_side
from clients.options import ClientOptions
from clients.video.options import ENGINES, RayOptions
from clients.video.sources import InputError, discover, open_reader
from serving.errors import SpecError
from serving.tolerances import Tolerances

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CompareOptions:
    baseline: str
    candidate: str
    out_dir: Path
    url: str | None = None  # where a side given as a bare model name is served
    client: ClientOptions = field(default_factory=ClientOptions)  # TLS, headers, deadline
    precision: str | None = None  # the tolerance row; None: the candidate's precision (fp32 if unknown)
    bounds: Path | None = None  # YAML overrides of the row's fields
    max_frames: int | None = None
    gallery: int = 3  # worst frames drawn per head and input
    plots: bool = True
    progress: bool = True
    engine: str = (
        "local"  # "ray": the model sides run as `percept video --engine ray` (clients.compare.fleet)
    )
    ray: RayOptions = field(default_factory=RayOptions)

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise SpecError(f"engine must be 'local' or 'ray', got {self.engine!r}")
        if self.max_frames is not None and self.max_frames < 1:
            raise SpecError(f"max_frames must be >= 1, got {self.max_frames}")
        if self.gallery < 0:
            raise SpecError(f"gallery must be >= 0, got {self.gallery}")


@dataclass
class CompareReport:
    baseline: str
    candidate: str
    row: str
    bounds: Tolerances
    inputs: dict[str, dict] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    serving: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def frames(self) -> int:
        return sum(v["frames"] for v in self.inputs.values())

    def line(self) -> str:
        if self.failures:
            return self.failures[0].line()
        heads = sorted(
            {
                h
                for v in self.inputs.values()
                for h in v
                if h not in ("frames", "undecodable", "series", "metrics")
            }
        )
        return (
            f"PASS {self.candidate} agrees with {self.baseline} within the {self.row} bounds: "
            f"{len(self.inputs)} input(s), {self.frames} frames, heads {', '.join(heads)}"
        )

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "line": self.line(),
            "baseline": self.baseline,
            "candidate": self.candidate,
            "bounds": {"row": self.row, **bounds_dict(self.bounds)},
            "failures": [f.line() for f in self.failures],
            "inputs": self.inputs,
            "serving": self.serving,
            "seconds": round(self.seconds, 3),
        }


def _check_sides(base, cand) -> None:
    a, b = base.spec, cand.spec
    if tuple(a.tasks) != tuple(b.tasks):
        raise SideError(f"mismatched heads: baseline has {list(a.tasks)}, candidate {list(b.tasks)}")
    for what in ("det_classes", "seg_classes", "fusion"):
        if getattr(a, what) != getattr(b, what):
            raise SideError(f"mismatched {what}: baseline {getattr(a, what)}, candidate {getattr(b, what)}")


def _latency(side) -> dict:
    import numpy as np

    lat = np.asarray(side.latencies_s) * 1e3
    if not lat.size:
        return {}
    p = {f"p{q}_ms": float(np.percentile(lat, q)) for q in (50, 90, 99)}
    return {**p, "requests": int(lat.size), "frames_per_s": float(lat.size / max(lat.sum() / 1e3, 1e-9))}


def run_compare(
    inputs: list[str], options: CompareOptions, ground_truth: scenes.GroundTruth | None = None
) -> CompareReport:
    """Compare the two sides on ``inputs`` (and on the scenes of ``ground_truth``, scored against
    it); writes the report under ``out_dir`` (the gate is ``report.passed`` / ``report.line()``)."""
    from clients.compare.report import GALLERY, clear_report, write_report

    t0 = time.perf_counter()
    sources = discover(inputs)
    if not sources and ground_truth is None:
        raise InputError(f"no inputs in {inputs}")
    texts, precision = (options.baseline, options.candidate), options.precision
    if options.engine == "ray":
        from clients.compare.fleet import run_sides
        from clients.compare.sides import onnx_precision

        precision = precision or onnx_precision(options.candidate)  # before it becomes a run folder
        texts = run_sides(inputs, options)
    base = open_side("baseline", texts[0], options.client, options.url)
    try:
        cand = open_side("candidate", texts[1], options.client, options.url)
    except BaseException:
        base.close()
        raise
    if options.engine == "ray":
        base.label, cand.label = (f"{t} (ray run)" for t in (options.baseline, options.candidate))
    try:
        _check_sides(base, cand)
        row, bounds = load_bounds(precision or cand.precision, options.bounds)
        report = CompareReport(base.label, cand.label, row, bounds)
        clear_report(options.out_dir)  # an earlier run's report never stands for this one
        gallery = Gallery(options.out_dir / GALLERY, options.gallery, bounds, base.spec.det_classes)
        for source in sources:
            report.inputs[source.name] = _compare_input(source, base, cand, bounds, gallery, options)
            report.failures += check(source.name, report.inputs[source.name], bounds)
        if ground_truth is not None:
            numbers = _compare_scenes(ground_truth, base, cand, bounds, gallery, options)
            report.inputs[scenes.NAME] = numbers
            report.failures += check(scenes.NAME, numbers, bounds) + scenes.check_deltas(
                numbers["metrics"], bounds
            )
        report.serving = {
            side: _latency(s) for side, s in (("baseline", base), ("candidate", cand)) if s.served
        }
        report.seconds = time.perf_counter() - t0
        write_report(report, options.out_dir, gallery.write(), plots=options.plots)
        return report
    finally:
        base.close()
        cand.close()


def _compare_input(source, base, cand, bounds: Tolerances, gallery, options: CompareOptions) -> dict:
    if source.fusion != base.spec.fusion:
        kind = "a KITTI sequence (camera + LiDAR)" if source.fusion else "camera-only"
        model = "fusion" if base.spec.fusion else "camera"
        raise InputError(f"input {source.path} is {kind}, the compared models are {model} models")
    reader = open_reader(source)
    total = reader.frame_count if options.max_frames is None else min(reader.frame_count, options.max_frames)
    frames = reader.frames()
    if options.max_frames is not None:
        frames = (item for item in frames if item.index < options.max_frames)
    return _compare_frames(
        source, ((item, None) for item in frames), total, base, cand, bounds, gallery, options
    )


def _compare_frames(source, pairs, total, base, cand, bounds, gallery, options, scoring=None) -> dict:
    """The agreement over ``pairs`` of (frame, ground truth or None); ``scoring`` gets the truth."""
    agreement = InputAgreement(source.name, base.spec, bounds)
    bar = _bar(options.progress, total, source.name)
    undecodable: list[int] = []
    try:
        for item, truth in pairs:
            bar.update(1)
            if item.image is None:
                undecodable.append(item.index)
                continue
            rb, rc = base.predict(source, item), cand.predict(source, item)
            frame = agreement.add(item.index, rb, rc)
            gallery.offer(source.name, item, rb, rc, frame)
            if scoring is not None:
                scoring.add(truth, rb, rc)
    finally:
        bar.close()
    if not agreement.frames:
        raise InputError(f"{source.path}: no decodable frame to compare")
    if undecodable:
        log.warning(
            "%s: %d undecodable frame(s) not compared: %s", source.name, len(undecodable), undecodable[:10]
        )
    out = {**agreement.to_dict(), "undecodable": undecodable}
    if scoring is not None:
        out["metrics"] = scoring.result()
    return {**out, "series": [f.to_dict() for f in agreement.frames]}


def _compare_scenes(truth, base, cand, bounds: Tolerances, gallery, options: CompareOptions) -> dict:
    if isinstance(base, RunSide) or isinstance(cand, RunSide):
        raise SideError("--scenes needs two model sides: a run folder holds no world scenes")
    if base.spec.input_hw != cand.spec.input_hw:
        raise SideError("--scenes renders at the models' input size: the two sides differ in input size")
    pairs = scenes.items(base.spec, truth.seeds)
    scoring = scenes.Scoring(truth, base.spec)
    src = scenes.source(base.spec)
    return _compare_frames(src, pairs, len(truth.seeds), base, cand, bounds, gallery, options, scoring)


def _bar(enabled: bool, total: int, name: str):
    from tqdm import tqdm

    return tqdm(total=total or None, desc=f"compare {name}", unit="frame", disable=not enabled)
