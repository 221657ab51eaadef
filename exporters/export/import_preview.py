"""`percept import-onnx --images DIR`: the imported model's heads on the user's own images, before
serving them.

The composed model (the file that will be served) runs in ONNX Runtime on each image, letterboxed
as the server letterboxes it (serving.processing.letterbox_frames). Written into the import's output
folder: ``preview/<image>.jpg`` (the image annotated as `percept video` draws a served frame; the
drawing is passed in by the caller, so that this module does not import the client package),
``preview.json`` (per image and per head: class fractions, detections and their sizes, the depth
range; the warnings) and ``preview.md`` (the same for a person). Plausibility warnings are
import_plausibility.py's; with ``strict`` they fail the import (see :func:`fail_on_findings`).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from exporters.export.head_spec import HeadSpec
from exporters.export.import_plausibility import Finding, check, image_stats, summarise
from serving.errors import ExportError, SpecError
from serving.letterbox import Letterbox
from serving.spec import IMAGES, ModelSpec

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
PREVIEW_DIR, PREVIEW_JSON, PREVIEW_MD = "preview", "preview.json", "preview.md"

# rgb, spec, one image's outputs (batch axis removed), its letterbox -> annotated BGR image
Draw = Callable[[np.ndarray, ModelSpec, dict[str, np.ndarray], Letterbox], np.ndarray]


@dataclass(frozen=True)
class PreviewOptions:
    images: Path
    strict: bool = False  # plausibility warnings fail the import
    max_images: int = 16
    batch: int = 4

    def __post_init__(self) -> None:
        if not Path(self.images).is_dir():
            raise SpecError(f"--images {str(self.images)!r} is not a folder")
        if self.max_images < 1 or self.batch < 1:
            raise SpecError("preview max_images and batch must be >= 1")


@dataclass
class Preview:
    images: list[str]
    per_image: list[dict]
    summary: dict
    findings: list[Finding] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "images": {n: s for n, s in zip(self.images, self.per_image, strict=True)},
            "summary": self.summary,
            "warnings": [f.to_dict() for f in self.findings],
        }

    def lines(self) -> list[str]:
        """The console summary: one line per head, then each warning."""
        out = [f"[preview] {len(self.images)} images"]
        seg = self.summary.get("segmentation")
        if seg:
            shares = ", ".join(f"{n} {v['median']:.1%}" for n, v in seg.items())
            out.append(f"[preview] segmentation  median image: {shares}")
        det = self.summary.get("detection")
        if det:
            area = det["area_fraction"]
            size = (
                f", box area median {area['median']:.1%} max {area['max']:.1%} of the frame" if area else ""
            )
            out.append(f"[preview] detection     per image {det['per_image']}{size}")
        depth = self.summary.get("depth")
        if depth and depth["median"] is not None:
            out.append(
                f"[preview] depth         {depth['min']:.3g} .. {depth['max']:.3g} m, "
                f"median {depth['median']:.3g} m"
            )
        out += [f"[preview] WARNING {f.line()}" for f in self.findings]
        return out


def clear_preview(out: Path) -> None:
    shutil.rmtree(Path(out) / PREVIEW_DIR, ignore_errors=True)
    for name in (PREVIEW_JSON, PREVIEW_MD):
        (Path(out) / name).unlink(missing_ok=True)


def list_images(folder: Path, limit: int) -> list[Path]:
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SpecError(f"--images {str(folder)!r} holds no image ({', '.join(IMAGE_SUFFIXES)})")
    if len(files) > limit:
        log.info("previewing the first %d of %d images in %s", limit, len(files), folder)
    return files[:limit]


def _read_rgb(path: Path) -> np.ndarray:
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SpecError(f"{path}: not an image OpenCV can read")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def run_preview(
    model: Path,
    spec: ModelSpec,
    heads: HeadSpec,
    options: PreviewOptions,
    out: Path,
    draw: Draw | None = None,
) -> Preview:
    """Run ``model`` (the composed file) on the images of ``options``; write the preview into ``out``."""
    import cv2

    from exporters.export.verify import ort_runner
    from serving.processing import letterbox_frames

    files = list_images(options.images, options.max_images)
    folder = Path(out) / PREVIEW_DIR
    clear_preview(out)  # an earlier run's images must not pass for this run's
    if draw is not None:
        folder.mkdir(parents=True)
    run = ort_runner(model)
    per_image: list[dict] = []
    for start in range(0, len(files), options.batch):
        chunk = files[start : start + options.batch]
        frames = [_read_rgb(p) for p in chunk]
        images, geoms = letterbox_frames(spec, frames)  # each frame letterboxed to the model size
        batch = run({IMAGES: images})
        for i, (path, frame, lb) in enumerate(zip(chunk, frames, geoms, strict=True)):
            outputs = {k: v[i] for k, v in batch.items()}
            per_image.append(image_stats(spec, outputs, lb))
            if draw is not None:
                cv2.imwrite(str(folder / f"{path.stem}.jpg"), draw(frame, spec, outputs, lb))
    names = [p.name for p in files]
    preview = Preview(names, per_image, summarise(per_image), check(heads, spec, per_image))
    (Path(out) / PREVIEW_JSON).write_text(json.dumps(preview.to_dict(), indent=2, sort_keys=True) + "\n")
    (Path(out) / PREVIEW_MD).write_text(_markdown(spec, preview, draw is not None))
    for f in preview.findings:
        log.info("%s: %s", spec.name, f.line())  # the CLI prints Preview.lines()
    return preview


def fail_on_findings(preview: Preview, out: Path, name: str, failed_report: str) -> None:
    """--strict: plausibility warnings fail the import like a failed verification (report.failed.json
    names them; no model.onnx)."""
    if not preview.findings:
        return
    document = {"network": name, "passed": False, "preview": preview.to_dict()}
    (Path(out) / failed_report).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    raise ExportError(
        f"--strict: {len(preview.findings)} plausibility warning(s): {preview.findings[0].line()}; "
        f"see {Path(out) / PREVIEW_MD}"
    )


def _markdown(spec: ModelSpec, preview: Preview, drawn: bool) -> str:
    lines = [f"# Preview of {spec.name} on {len(preview.images)} images", ""]
    if preview.findings:
        lines += ["## Warnings", ""] + [
            f"- **{f.head}**: {f.message} (check `{'`, `'.join(f.keys)}`)" for f in preview.findings
        ]
    else:
        lines += ["No plausibility warning."]
    seg = preview.summary.get("segmentation")
    if seg:
        lines += [
            "",
            "## Segmentation: share of each image",
            "",
            "| class | median | min | max |",
            "|---|---|---|---|",
        ]
        lines += [f"| {n} | {v['median']:.1%} | {v['min']:.1%} | {v['max']:.1%} |" for n, v in seg.items()]
    det = preview.summary.get("detection")
    if det:
        lines += [
            "",
            "## Detection",
            "",
            f"- detections per image: {det['per_image']} (inverted boxes: {det['inverted']})",
        ]
        if det["area_fraction"]:
            a = det["area_fraction"]
            lines.append(
                f"- box area over the frame: min {a['min']:.2%}, median {a['median']:.2%}, "
                f"p90 {a['p90']:.2%}, max {a['max']:.2%}"
            )
    depth = preview.summary.get("depth")
    if depth and depth["median"] is not None:
        lines += [
            "",
            "## Depth",
            "",
            f"- {depth['min']:.3g} .. {depth['max']:.3g} m, median {depth['median']:.3g} m",
        ]
        if depth["non_finite"]:
            lines.append(f"- {depth['non_finite']} values not finite")
    lines += ["", "## Images", ""]
    for name in preview.images:
        stem = Path(name).stem
        lines.append(f"![{name}]({PREVIEW_DIR}/{stem}.jpg)" if drawn else f"- {name}")
    return "\n".join(lines) + "\n"
