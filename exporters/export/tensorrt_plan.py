"""What a TensorRT plan is, in plain Python (no TensorRT needed, tested on every machine): the pinned
TensorRT version and the image that builds with it, the optimisation profile shapes, the
per-compute-capability file names, the timing-cache key and the provenance sidecar.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

from exporters.export.options import BatchProfile, TensorRTOptions
from serving import ngc
from serving.errors import ExportError, ServingError
from serving.plan_key import plan_key
from serving.spec import ModelSpec
from serving.tensorrt_pin import same_tensorrt, target_tensorrt, version_key


# --- the pin (pure) -------------------------------------------------------------------------------
# An engine is only loadable by the TensorRT that built it (serialized engines must match
# major.minor.patch), so it is built by the TensorRT of the Triton image that serves it: serving.ngc
# holds that target (`percept repo build` checks sidecars against it without importing exporters).
def check_tensorrt_version(installed: str) -> None:
    try:
        target = target_tensorrt()
    except ServingError as exc:
        raise ExportError(str(exc)) from exc
    if not same_tensorrt(installed, target):
        raise ExportError(
            f"TensorRT {installed} is installed, but {ngc.TRITON_IMAGE} serves engines of TensorRT "
            f"{target} only: build inside the matching image (`percept export ... --engine "
            "tensorrt --print-docker` prints the command)"
        )


def tensorrt_image() -> str:
    """The NGC TensorRT container of the Triton image's release (same month, same TensorRT)."""
    return ngc.TENSORRT_IMAGE


def docker_command(export_args: list[str], repo_root: Path, workdir: Path, out_dir: Path) -> str:
    """The command that runs ``percept export <export_args>`` inside :func:`tensorrt_image`.

    A source tree (``repo_root`` holds pyproject.toml) is mounted and installed with its ``export``
    extra; a wheel install has no tree to mount, so the container installs the same release of the
    package from the index instead. The working directory and the output folder are mounted at the
    same paths, so the arguments' paths hold.
    """
    import shlex

    root = Path(repo_root).resolve()
    if (root / "pyproject.toml").is_file():
        mounts, install = [(root, "/opt/perception-serving")], "'/opt/perception-serving[export]'"
    else:
        from importlib.metadata import version

        mounts, install = [], shlex.quote(f"perception-serving[export]=={version('perception-serving')}")
    tree = len(mounts)  # a folder inside the mounted tree is still mounted at its own path
    for folder in (Path(workdir).resolve(), Path(out_dir).resolve()):
        if not any(folder == m or m in folder.parents for m, _ in mounts[tree:]):
            mounts.append((folder, str(folder)))
    volumes = " ".join(f"-v {shlex.quote(str(src))}:{shlex.quote(dst)}" for src, dst in mounts)
    inner = f"pip install -q {install} && percept export " + " ".join(shlex.quote(a) for a in export_args)
    return (
        f"docker run --rm --gpus all {volumes} -w {shlex.quote(str(Path(workdir).resolve()))} "
        f"{tensorrt_image()} bash -c {shlex.quote(inner)}"
    )


def timing_cache_path(base: Path, compute_capability: tuple[int, int], trt_version: str) -> Path:
    """``timing.cache`` -> ``timing.sm90.trt10.5.0.cache``: timings are only valid for one GPU
    architecture and one TensorRT version, so each pair gets its own file."""
    base = Path(base)
    major, minor = compute_capability
    version = ".".join(str(v) for v in version_key(trt_version))
    return base.with_name(f"{base.stem}.sm{major}{minor}.trt{version}{base.suffix or '.cache'}")


# --- pure parts -----------------------------------------------------------------------------------
def profile_shapes(spec: ModelSpec, profile: BatchProfile) -> dict[str, tuple[tuple[int, ...], ...]]:
    """Input name -> (min, opt, max) shapes of the one optimisation profile."""
    shapes = {}
    for t in spec.network_inputs:
        rest = tuple(int(d) for d in t.dims[1:])
        shapes[t.name] = tuple((b, *rest) for b in (profile.min, profile.opt, profile.max))
    return shapes


# the frame engine's image sizes (height, width): min, opt (the common 720p camera) and max (4K UHD);
# a frame outside them is refused by the engine: decode larger sources at a reduced scale first
FRAME_PROFILE_HW = ((16, 16), (720, 1280), (2160, 3840))
FRAME_PLAN_NAME = "frame.plan"  # becomes frame_sm<cc>.plan (serving.repository.FRAME_PLAN_STEM)


def frame_profile_shapes(spec: ModelSpec, profile: BatchProfile) -> dict[str, tuple[tuple[int, ...], ...]]:
    """Input name -> (min, opt, max) shapes of the frame engine's one profile: the batch profile's
    batches with FRAME_PROFILE_HW's frame sizes (serving.ensemble.frame_inputs)."""
    from serving.ensemble import frame_inputs
    from serving.spec import IMAGE

    batches = (profile.min, profile.opt, profile.max)
    shapes: dict[str, tuple[tuple[int, ...], ...]] = {}
    for t in frame_inputs(spec):
        if t.name == IMAGE:
            shapes[t.name] = tuple((b, h, w, 3) for b, (h, w) in zip(batches, FRAME_PROFILE_HW, strict=True))
        else:
            rest = tuple(int(d) for d in t.dims[1:])
            shapes[t.name] = tuple((b, *rest) for b in batches)
    return shapes


def plan_filename(plan_name: str, compute_capability: tuple[int, int]) -> str:
    """``model.plan`` + (9, 0) -> ``model_sm90.plan`` (Triton's ``cc_model_filenames`` values)."""
    major, minor = compute_capability
    stem = plan_name[: -len(".plan")] if plan_name.endswith(".plan") else plan_name
    return f"{stem}_sm{major}{minor}.plan"


def cc_model_filenames(plan_name: str, capabilities: list[tuple[int, int]]) -> dict[str, str]:
    """The config.pbtxt ``cc_model_filenames`` map: {"9.0": "model_sm90.plan", ...}."""
    return {f"{ma}.{mi}": plan_filename(plan_name, (ma, mi)) for ma, mi in capabilities}


def sidecar(
    spec: ModelSpec,
    options: TensorRTOptions,
    trt_version: str,
    gpu_name: str,
    compute_capability: tuple[int, int],
    onnx_sha256: str,
) -> dict:
    return {
        "tensorrt_version": trt_version,
        "gpu_name": gpu_name,
        "compute_capability": f"{compute_capability[0]}.{compute_capability[1]}",
        "precision": options.precision,
        # weakly typed INT8 lets layers without INT8 kernels run in FP16; a strongly typed build
        # runs the ONNX's own types (exporters.export.precision), nothing chosen by the builder
        "fallback_precision": "fp16" if options.precision == "int8" and not options.strongly_typed else None,
        "strongly_typed": options.strongly_typed,
        "tf32": False if options.precision == "fp32" else None,
        "profile": options.profile.as_dict(),
        "profile_shapes": {k: [list(s) for s in v] for k, v in profile_shapes(spec, options.profile).items()},
        "workspace_mib": options.workspace_mib,
        "calibration": (
            {"source": str(options.calibration.source), "images": options.calibration.images}
            if options.calibration
            else None
        ),
        "spec_hash": spec.spec_hash(),
        "network": spec.name,
        "onnx_sha256": onnx_sha256,
        # what the plan is valid for: the cluster's plan builder and the Triton pod's check compare it
        "plan_key": plan_key(
            onnx_sha256,
            trt_version,
            compute_capability,
            gpu_name,
            options.precision,
            (options.profile.min, options.profile.opt, options.profile.max),
        ).as_dict(),
        "built_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def write_sidecar(plan: Path, document: dict) -> Path:
    path = plan.with_name(plan.name + ".json")
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    return path
