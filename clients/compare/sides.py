"""The two sides of `percept compare`: what answers a frame, as a PerceptionResult in source pixels.

A side is one of
* an ONNX file, run here on ONNX Runtime (clients.local.LocalModel: the served pipeline's letterbox
  and decoding, so its boxes are in source pixels and its dense maps are the letterbox's content
  at model resolution, exactly what a served pipeline answers);
* a served pipeline: ``MODEL`` on ``--url``, or ``HOST:PORT/MODEL`` on a server of its own
  (clients.client.PerceptionClient, with the TLS and headers of ClientOptions); each call is timed;
* a finished `percept video` run folder: its results.jsonl and the maps of ``--save-maps``
  (clients.video.maps), looked up by input name and frame index; nothing is run again.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

from clients.options import ClientOptions
from clients.results import Detection, PerceptionResult
from clients.video import maps
from clients.video.options import RESULTS
from clients.video.sources import FrameItem, InputSource
from serving.errors import SpecError
from serving.letterbox import Letterbox
from serving.spec import ModelSpec


class SideError(SpecError):
    """A side that cannot be used: missing, unreadable, or not answering what the other side does."""


class OnnxSide:
    served = False

    def __init__(self, role: str, path: Path) -> None:
        from clients.local import LocalModel

        try:
            self._model = LocalModel(path, threads=1)
        except SpecError as exc:
            raise SideError(f"{role} {path}: {exc}") from None
        except Exception as exc:  # ONNX Runtime refusing the file: corrupt or not an ONNX model
            raise SideError(f"{role} {path}: not a readable ONNX model ({type(exc).__name__})") from None
        self.spec: ModelSpec = self._model.spec
        self.label = f"{path.name} (onnx)"
        self.precision = _file_precision(path)
        self.latencies_s: list[float] = []

    def predict(self, source: InputSource, item: FrameItem) -> PerceptionResult:
        return self._model.infer(None, item.image, item.points, item.projection)

    def close(self) -> None:
        pass


class ServedSide:
    served = True

    def __init__(self, role: str, url: str, model: str, options: ClientOptions) -> None:
        from clients.client import PerceptionClient
        from serving.errors import ClientError

        self._client = PerceptionClient(url, replace(options, model=model))
        try:
            self.spec = self._client.spec
        except ClientError as exc:
            self._client.close()
            raise SideError(f"{role} {model} on {url}: {exc}") from None
        self.label = f"{model} @ {url}"
        self.precision = None
        self.latencies_s: list[float] = []

    def predict(self, source: InputSource, item: FrameItem) -> PerceptionResult:
        t0 = time.perf_counter()
        result = self._client.infer(frame=item.image, points=item.points, projection=item.projection)
        self.latencies_s.append(time.perf_counter() - t0)
        return result

    def close(self) -> None:
        self._client.close()


class RunSide:
    """A finished `percept video` run: ``FOLDER/<input name>/results.jsonl`` + ``maps/``."""

    served = False

    def __init__(self, role: str, folder: Path) -> None:
        self.folder = folder
        self.role = role
        specs = sorted(folder.glob(f"*/{maps.MAPS}/{maps.SPEC}"))
        if not specs:
            raise SideError(
                f"{role} {folder}: a run folder without maps: run `percept video --save-maps` to compare it"
            )
        self.spec = maps.read_spec(specs[0].parent)
        self.label = f"{folder.name} (run)"
        self.precision = None
        self.latencies_s: list[float] = []
        self._records: dict[str, dict[int, dict]] = {}

    def _input(self, source: InputSource) -> dict[int, dict]:
        if source.name not in self._records:
            results = self.folder / source.name / RESULTS
            if not results.is_file():
                raise SideError(f"{self.role} {self.folder}: no complete run of input {source.name!r}")
            if not (self.folder / source.name / maps.MAPS).is_dir():
                raise SideError(f"{self.role} {self.folder / source.name}: no maps: run with --save-maps")
            with results.open() as fh:
                self._records[source.name] = {r["frame"]: r for r in map(json.loads, fh)}
        return self._records[source.name]

    def predict(self, source: InputSource, item: FrameItem) -> PerceptionResult:
        record = self._input(source).get(item.index)
        if record is None or "error" in record:
            why = "missing" if record is None else record["error"]
            raise SideError(f"{self.role} {self.folder}: {source.name} frame {item.index}: {why}")
        dets = None
        if "detections" in record:
            dets = tuple(
                Detection(tuple(d["box"]), d["score"], d["class_id"], d["class_name"])
                for d in record["detections"]
            )
        seg, depth = maps.read_maps(self.folder / source.name / maps.MAPS, item.index, self.spec)
        h, w = record["source_hw"]
        lb = Letterbox.fit((h, w), self.spec.input_hw)
        return PerceptionResult(dets, seg, depth, lb, self.spec.seg_classes)

    def close(self) -> None:
        pass


def _file_precision(path: Path) -> str:
    from serving.onnx_meta import file_precision

    try:
        return file_precision(path)
    except Exception:  # no provenance: an imported or hand-made file is taken as FP32
        return "fp32"


def onnx_precision(text: str) -> str | None:
    """The precision an ONNX side records (its tolerance row); None for a side that is no ONNX file."""
    path = Path(text)
    return _file_precision(path) if path.suffix.lower() == ".onnx" and path.is_file() else None


@dataclass(frozen=True)
class SideRef:
    """What a side's text names: an ONNX file, a run folder, or a served ``model``."""

    kind: str  # "onnx" | "run" | "served"
    path: Path = Path()  # the ONNX file or the run folder
    url: str = ""  # the server of a served model
    model: str = ""


def parse_side(role: str, text: str, url: str | None) -> SideRef:
    """``text`` read as a side (``role`` is "baseline" or "candidate", for the error lines); the
    in-process comparison (open_side) and the Ray runs (clients.compare.fleet) read it alike."""
    path = Path(text)
    if path.suffix.lower() == ".onnx" or path.is_file():
        if not path.is_file():
            raise SideError(f"{role} {text}: no such file")
        return SideRef("onnx", path=path)
    if path.is_dir():
        return SideRef("run", path=path)
    host, sep, model = text.rpartition("/")
    if sep and ":" in host:
        return SideRef("served", url=host, model=model)
    if "/" in text or text.startswith("."):
        raise SideError(f"{role} {text}: no such file or run folder")
    if url is None:
        raise SideError(f"{role} {text}: neither an ONNX file nor a run folder; a served model needs --url")
    return SideRef("served", url=url, model=text)


def open_side(role: str, text: str, options: ClientOptions, url: str | None):
    """``text`` as a side (``role`` is "baseline" or "candidate", for the error lines)."""
    ref = parse_side(role, text, url)
    if ref.kind == "onnx":
        return OnnxSide(role, ref.path)
    if ref.kind == "run":
        return RunSide(role, ref.path)
    return ServedSide(role, ref.url, ref.model, options)
