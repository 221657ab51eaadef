"""Stage 1: PerceptionNet -> ONNX with the spec's exact inputs/outputs and post-processing in-graph.

The written file: opset >= 17, dynamic batch axis named ``batch`` on every input and output,
``onnx.checker`` and shape inference pass, spec JSON and provenance in ``metadata_props``
(keys :data:`serving.spec.SPEC_KEY`, :data:`serving.spec.PROVENANCE_KEY`, read back by
:mod:`serving.onnx_meta`). Written to a temporary name and renamed at the end
so a failed export never leaves a file that looks complete.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
from pathlib import Path

from exporters.export.options import OnnxOptions
from serving import onnx_meta
from serving.errors import ExportError, MissingDependencyError, ServingError
from serving.spec import PROVENANCE_KEY, SPEC_KEY, ModelSpec

log = logging.getLogger(__name__)

BATCH_DIM = "batch"


def _onnx():
    try:
        import onnx
    except ImportError as exc:
        raise MissingDependencyError("onnx", "export") from exc
    return onnx


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def provenance(spec: ModelSpec, options: OnnxOptions, extra: dict | None = None) -> dict:
    import onnx
    import torch

    prov = {
        "network": spec.name,
        "checkpoint": str(options.checkpoint) if options.checkpoint else None,
        "checkpoint_sha256": file_sha256(options.checkpoint) if options.checkpoint else None,
        "input_hw": list(spec.input_hw),
        "det_classes": list(spec.det_classes),
        "seg_classes": list(spec.seg_classes),
        "batch_profile": options.batch_profile.as_dict(),
        "opset": options.opset,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "spec_hash": spec.spec_hash(),
        "exported_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    prov.update(extra or {})
    return prov


def export_onnx(model, path: str | Path, options: OnnxOptions, provenance_extra: dict | None = None) -> Path:
    """Export PerceptionNet ``model`` (with ``model.spec``) to ``path``; returns ``path``."""
    import torch

    from exporters.export.graph import build_export_graph
    from exporters.export.nms import nms_translation_table

    spec: ModelSpec = model.spec
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    graph = build_export_graph(model, spec)
    profile = options.batch_profile
    example = _example_inputs(spec, batch=max(2, profile.opt))
    batch = torch.export.Dim(BATCH_DIM, min=1, max=max(profile.max, 2))
    dynamic_shapes = tuple({0: batch} for _ in spec.network_inputs)
    log.info("exporting %s %dx%d to ONNX (opset %d)", spec.name, *spec.input_hw, options.opset)
    try:
        program = torch.onnx.export(
            graph,
            example,
            dynamo=True,
            dynamic_shapes=dynamic_shapes,
            custom_translation_table=nms_translation_table(),
            opset_version=options.opset,
            input_names=[t.name for t in spec.network_inputs],
            output_names=[t.name for t in spec.network_outputs],
            optimize=options.simplify,
            verbose=False,
        )
        if program is None:
            raise ExportError("torch.onnx.export returned no program")
        proto = program.model_proto
        proto = finalize(proto, spec, provenance(spec, options, provenance_extra))
        save_checked(proto, path, spec)
    except ExportError:
        raise
    except Exception as exc:
        raise ExportError(f"ONNX export of {spec.name} failed: {type(exc).__name__}: {exc}") from exc
    log.info("wrote %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return path


def _example_inputs(spec: ModelSpec, batch: int) -> tuple:
    import torch

    gen = torch.Generator().manual_seed(0)
    out = []
    for t in spec.network_inputs:
        shape = (batch, *(int(d) for d in t.dims[1:]))
        if t.dtype == "uint8":
            out.append(torch.randint(0, 256, shape, dtype=torch.uint8, generator=gen))
        else:
            out.append(torch.rand(shape, generator=gen) * 50.0)
    return tuple(out)


def finalize(proto, spec: ModelSpec, prov: dict):
    """Name the batch axis, attach spec + provenance metadata, run shape inference."""
    onnx = _onnx()
    for vi in list(proto.graph.input) + list(proto.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if len(dims):
            dims[0].ClearField("dim_value")
            dims[0].dim_param = BATCH_DIM
    set_metadata(proto, spec, prov)
    return onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)


def set_metadata(proto, spec: ModelSpec, prov: dict) -> None:
    kept = [p for p in proto.metadata_props if p.key not in (SPEC_KEY, PROVENANCE_KEY)]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in ((SPEC_KEY, spec.to_json()), (PROVENANCE_KEY, json.dumps(prov, sort_keys=True))):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "perception-serving"


def read_onnx_spec(path: str | Path) -> ModelSpec:
    """The ModelSpec stored in an exported ONNX file's metadata (:func:`serving.onnx_meta.read_spec`)."""
    try:
        return onnx_meta.read_spec(path)
    except ServingError as exc:
        raise ExportError(str(exc)) from exc


def read_provenance(path: str | Path) -> dict:
    """The export provenance in an ONNX file's metadata (:func:`serving.onnx_meta.read_provenance`)."""
    try:
        return onnx_meta.read_provenance(path)
    except ServingError as exc:
        raise ExportError(str(exc)) from exc


_ONNX_DTYPES = {"uint8": 2, "int32": 6, "int64": 7, "float16": 10, "float32": 1, "bool": 9}


def save_checked(proto, path: Path, spec: ModelSpec) -> None:
    """Write ``proto`` to ``<path>.partial``, check it against ``spec`` and rename it to ``path``:
    a file at ``path`` is always complete and checked, and a failure leaves no partial file."""
    tmp = path.with_name(path.name + ".partial")
    try:
        _onnx().save(proto, str(tmp))
        check_onnx(tmp, spec)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def check_onnx(path: str | Path, spec: ModelSpec) -> None:
    """onnx.checker + strict shape inference, and inputs/outputs == the spec (names, dtypes, dims)."""
    onnx = _onnx()
    try:
        onnx.checker.check_model(str(path), full_check=True)
        proto = onnx.load(str(path))
    except Exception as exc:
        raise ExportError(f"{path}: ONNX check failed: {type(exc).__name__}: {exc}") from exc
    if proto.opset_import and max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) < 17:
        raise ExportError(f"{path}: opset < 17")
    problems = tensor_mismatches(proto.graph.input, spec.network_inputs, "input")
    problems += tensor_mismatches(proto.graph.output, spec.network_outputs, "output")
    if problems:
        raise ExportError(f"{path}: " + "; ".join(problems))


def tensor_mismatches(values, expected, kind: str) -> list[str]:
    """Differences between ONNX ValueInfos and TensorSpecs, each naming the tensor."""
    got = {v.name: v for v in values}
    want = [t.name for t in expected]
    problems = []
    if sorted(got) != sorted(want):
        problems.append(f"{kind}s are {sorted(got)}, the spec wants {want}")
    for t in expected:
        v = got.get(t.name)
        if v is None:
            continue
        tt = v.type.tensor_type
        if tt.elem_type != _ONNX_DTYPES[t.dtype]:
            problems.append(f"{kind} {t.name!r} has ONNX elem_type {tt.elem_type}, the spec wants {t.dtype}")
        dims = [d.dim_param if d.dim_param else d.dim_value for d in tt.shape.dim]
        want_dims = [BATCH_DIM if isinstance(d, str) else d for d in t.dims]
        if dims != want_dims:
            problems.append(f"{kind} {t.name!r} has dims {dims}, the spec wants {want_dims}")
    return problems
