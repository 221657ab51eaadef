"""Write a Triton model repository from exported ONNX files and the spec they carry.

Per network, whatever heads it has: the network model ``<net>`` and the frame model ``<net>_frame``
(engine ``python`` running ONNX Runtime, ``onnxruntime`` or ``tensorrt_plan``; serving.spec says
what each takes), a ``<net>_decode`` python model and an ensemble (decode -> frame) named by
:func:`serving.model_config.pipeline_names` (``perception`` / ``perception_fusion`` for the first
camera and fusion network with every head, ``<net>_pipeline`` for the others, or the name given),
so several pipelines load and serve side by side. Every
config.pbtxt comes from :mod:`serving.model_config`; each python model's model.py is one import
of its ``TritonPythonModel`` from :mod:`serving.triton_models` (the stub runs the environment's
``python3``, where ``serving`` is installed), so the code is never copied.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from serving import ngc
from serving import spec as S
from serving.errors import ServingError
from serving.frame_graph import write_frame_onnx
from serving.model_config import (
    RepositoryOptions,
    config_text,
    decode_config,
    decode_model_name,
    ensemble_config,
    frame_config,
    frame_model_name,
    network_config,
    network_model_name,
    pipeline_names,
    warmup_files,
)
from serving.onnx_meta import read_provenance, read_spec
from serving.spec import ModelSpec
from serving.tensorrt_pin import same_tensorrt, target_tensorrt

log = logging.getLogger(__name__)

_PLAN_CC = re.compile(r"_sm(\d+)\.plan$")
# the engines next to an exported ONNX: <stem>_sm<cc>.plan, the network's and the frame model's
NETWORK_PLAN_STEM, FRAME_PLAN_STEM = "model", "frame"


@dataclass(frozen=True)
class NetworkArtifact:
    """An exported network: its spec and files (ONNX, and TensorRT plans by compute capability)."""

    spec: ModelSpec
    onnx: Path | None = None
    plans: tuple[tuple[str, Path], ...] = ()  # (compute capability "8.6", path)
    max_batch: int | None = None  # the export's batch profile max (provenance); None: not recorded
    frame_plans: tuple[tuple[str, Path], ...] = ()  # the frame model's engines

    @classmethod
    def from_onnx(cls, path: str | Path) -> NetworkArtifact:
        path = Path(path)
        profile = read_provenance(path).get("batch_profile") or {}
        max_batch = int(profile["max"]) if "max" in profile else None
        plans, frames = find_plans(path.parent), find_plans(path.parent, FRAME_PLAN_STEM)
        return cls(read_spec(path), path, plans, max_batch, frames)


def check_batch_profile(artifact: NetworkArtifact, max_batch_size: int) -> None:
    """The repository's max batch must lie within the batch profile the network was exported with
    (every engine: a TensorRT engine cannot run it, and an ONNX was never verified beyond it)."""
    if artifact.max_batch is None:
        log.warning("%s records no batch profile: its max batch cannot be checked", artifact.onnx)
        return
    if max_batch_size > artifact.max_batch:
        raise ServingError(
            f"{network_model_name(artifact.spec)}: max batch size {max_batch_size} exceeds the batch "
            f"profile's max {artifact.max_batch} of {artifact.onnx}; lower --max-batch-size to "
            f"{artifact.max_batch} or export again with --max-batch {max_batch_size}"
        )


def find_plans(folder: Path, stem: str = NETWORK_PLAN_STEM) -> tuple[tuple[str, Path], ...]:
    """``model_sm86.plan`` -> ("8.6", path): the per-compute-capability engines next to the ONNX."""
    found = []
    for p in sorted(folder.glob(f"{stem}_sm*.plan")):
        m = _PLAN_CC.search(p.name)
        if m:
            digits = m.group(1)
            found.append((f"{digits[:-1]}.{digits[-1]}", p))
    return tuple(found)


def check_plan_sidecar(plan: Path, spec: ModelSpec, max_batch_size: int) -> None:
    """A TensorRT engine must come from this spec and its profile must cover every batch Triton forms."""
    import json

    sidecar = plan.with_name(plan.name + ".json")
    if not sidecar.exists():
        log.warning("%s has no sidecar %s: its profile and spec cannot be checked", plan, sidecar.name)
        return
    doc = json.loads(sidecar.read_text())
    check_plan_tensorrt(plan, doc.get("tensorrt_version"))
    if doc.get("spec_hash") not in (None, spec.spec_hash()):
        raise ServingError(
            f"{plan.name} was built for another spec (hash {doc['spec_hash']}, the ONNX has "
            f"{spec.spec_hash()}): rebuild the engine from this ONNX"
        )
    profile = doc.get("profile") or {}
    if profile and (profile.get("min", 1) > 1 or profile.get("max", max_batch_size) < max_batch_size):
        raise ServingError(
            f"{plan.name}: engine profile batch {profile.get('min')}..{profile.get('max')} does not cover "
            f"the dynamic batcher's 1..{max_batch_size}; rebuild the engine or lower --max-batch-size"
        )


def check_plan_tensorrt(plan: Path, built_with: str | None, server: str | None = None) -> None:
    """An engine loads only in the TensorRT that built it: refuse a plan whose sidecar names another
    TensorRT than the target server's (``server``; None: serving.ngc's target, ServingError where it
    is not pinned)."""
    if built_with is None:
        log.warning("%s: the sidecar does not say which TensorRT built it; cannot check", plan.name)
        return
    server = target_tensorrt() if server is None else server
    if not same_tensorrt(str(built_with), server):
        raise ServingError(
            f"{plan.name} was built by TensorRT {built_with}, but {ngc.TRITON_IMAGE} runs TensorRT {server}: "
            "rebuild it inside the matching image (`percept export ... --engine tensorrt --print-docker`)"
        )


def _put(src: Path, dst: Path, link: bool) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    if link:
        os.symlink(src.resolve(), dst)
    else:
        shutil.copyfile(src, dst)


def _put_engines(plans, version_dir: Path, engine: str, link: bool, onnx: Path) -> None:
    """A model's files: its plans and their sidecars (tensorrt_plan), else the ONNX file."""
    if engine != "tensorrt_plan":
        _put(onnx, version_dir / "model.onnx", link)
        return
    for _, plan in plans:
        _put(plan, version_dir / plan.name, link)
        sidecar = plan.with_name(plan.name + ".json")
        if sidecar.exists():
            _put(sidecar, version_dir / sidecar.name, link)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def model_py(module: str) -> str:
    """The model.py of a python-backend model: the class of ``serving.triton_models.<module>``."""
    return (
        f'"""Written by `percept repo build`: the model is serving.triton_models.{module}."""\n'
        f"\nfrom serving.triton_models.{module} import TritonPythonModel  # noqa: F401\n"
    )


def frame_engine_options(artifact: NetworkArtifact, options: RepositoryOptions) -> RepositoryOptions:
    """The frame model's engine: the repository's, except a tensorrt_plan repository whose export
    left no ``frame_sm<cc>.plan``: its frame model runs the frame graph on the onnxruntime backend
    (GPU) beside the network's engine, rather than leave the repository without a frame model."""
    if options.engine == "tensorrt_plan" and not artifact.frame_plans:
        return replace(options, engine="onnxruntime")
    return options


def write_configs(artifacts: list[NetworkArtifact], out_dir: Path, options: RepositoryOptions) -> list[str]:
    """Every config.pbtxt and model.py (no weights); returns the model names written."""
    names = [network_model_name(a.spec) for a in artifacts]
    if len(set(names)) != len(names):
        raise ServingError(f"two networks share a model name: {names}")
    written = []
    for a in artifacts:
        name = network_model_name(a.spec)
        plans = {cc: p.name for cc, p in a.plans} if options.engine == "tensorrt_plan" else None
        _write(out_dir / name / "config.pbtxt", config_text(network_config(a.spec, options, plans)))
        if options.engine == "python":
            _write(out_dir / name / "1" / "model.py", model_py("network"))
        written.append(name)
        frame = frame_model_name(a.spec)
        frame_options = frame_engine_options(a, options)
        frame_plans = (
            {cc: p.name for cc, p in a.frame_plans} if frame_options.engine == "tensorrt_plan" else None
        )
        _write(
            out_dir / frame / "config.pbtxt", config_text(frame_config(a.spec, frame_options, frame_plans))
        )
        if options.engine == "python":
            _write(out_dir / frame / "1" / "model.py", model_py("frame"))
        if options.warmup:
            for file, data in warmup_files().items():
                (out_dir / frame / "warmup").mkdir(parents=True, exist_ok=True)
                (out_dir / frame / "warmup" / file).write_bytes(data)
        written.append(frame)
    if options.ensembles:
        ensembles = pipeline_names([a.spec for a in artifacts], options.pipeline_names)
        for a in artifacts:
            model = decode_model_name(a.spec)
            _write(out_dir / model / "config.pbtxt", config_text(decode_config(a.spec, options)))
            _write(out_dir / model / "1" / "model.py", model_py("decode"))
            written.append(model)
            ens = ensembles[network_model_name(a.spec)]
            _write(out_dir / ens / "config.pbtxt", config_text(ensemble_config(a.spec, options, ens)))
            (out_dir / ens / "1").mkdir(parents=True, exist_ok=True)
            (out_dir / ens / "1" / ".gitkeep").touch()
            written.append(ens)
    return written


def build_repository(
    onnx_paths: list[str | Path], out_dir: str | Path, options: RepositoryOptions | None = None
) -> list[str]:
    """Write the repository for these exported ONNX files into ``out_dir``; returns the model names.

    Models of the same names already in ``out_dir`` are replaced; others are left alone.
    """
    options = options or RepositoryOptions()
    if not onnx_paths:
        raise ServingError("no ONNX file given")
    artifacts = [NetworkArtifact.from_onnx(p) for p in onnx_paths]
    out = Path(out_dir)
    for a in artifacts:
        check_batch_profile(a, options.batching.max_batch_size)
        if options.engine == "tensorrt_plan" and not a.plans:
            raise ServingError(
                f"engine tensorrt_plan: no {NETWORK_PLAN_STEM}_sm<cc>.plan next to {a.onnx}; build the "
                "engines with `percept export --engine tensorrt` on the target GPU first"
            )
        if options.engine == "tensorrt_plan" and not a.frame_plans:
            log.warning(
                "%s: no %s_sm<cc>.plan beside it: the frame model runs the frame graph on the "
                "onnxruntime backend, the network on its TensorRT engine",
                a.onnx,
                FRAME_PLAN_STEM,
            )
    if options.engine == "tensorrt_plan":
        for a in artifacts:
            for _, plan in (*a.plans, *a.frame_plans):
                check_plan_sidecar(plan, a.spec, options.batching.max_batch_size)
    names = write_configs(artifacts, out, options)
    for a in artifacts:
        assert a.onnx is not None
        frame_options = frame_engine_options(a, options)
        _put_engines(a.plans, out / network_model_name(a.spec) / "1", options.engine, options.link, a.onnx)
        frame_dir = out / frame_model_name(a.spec) / "1"
        if frame_options.engine != "tensorrt_plan" and frame_options.frame_as_graph:
            write_frame_onnx(a.onnx, frame_dir / "model.onnx", a.spec)
        else:
            _put_engines(a.frame_plans, frame_dir, frame_options.engine, options.link, a.onnx)
    log.info("wrote %d models to %s (%s engine)", len(names), out, options.engine)
    return names


def read_repository_specs(repo: str | Path) -> list[ModelSpec]:
    """The specs of the network models in a repository (their :data:`~serving.spec.SPEC_KEY` parameter)."""
    import json

    from serving.model_config import parse_config

    specs = []
    for cfg_path in sorted(Path(repo).glob("*/config.pbtxt")):
        cfg = parse_config(cfg_path.read_text())
        if S.SPEC_KEY not in cfg.parameters:
            continue
        spec = ModelSpec.from_dict(json.loads(cfg.parameters[S.SPEC_KEY].string_value))
        if cfg.name == network_model_name(spec):
            specs.append(spec)
    return specs
