"""Stage 3: ONNX -> TensorRT engine, as a user runs it inside the NGC Triton image on an NVIDIA GPU.

Explicit batch, one optimisation profile from the min/opt/max batch, FP32 (TF32 off) / FP16 /
INT8 (entropy calibration, FP16 fallback for layers without INT8 kernels, calibration cache kept),
a timing cache reused across builds, a workspace limit. The engine is written raw (what
``trtexec --saveEngine`` writes and Triton's ``tensorrt_plan`` backend loads) under a per-compute-
capability name (``model.plan`` -> ``model_sm90.plan``, for ``cc_model_filenames``) with a sidecar
``model_sm90.plan.json``, then verified against PyTorch with the precision's bounds
(exporters.export.tolerances).

Building needs TensorRT and nothing else: device buffers come from the CUDA runtime through
cuda-python (exporters.export.cuda_buffers), never torch. The path TensorRT 11 keeps is a strongly
typed network over an FP16-typed or QDQ INT8 ONNX (exporters.export.precision), whose precision is the
file's; the weakly typed FP16/INT8 builder flags and the implicit INT8 calibrator are used only where
the installed TensorRT still has them (checked with hasattr, :func:`weak_typing_missing`) and refused
in one line where it does not ("Migrating from TensorRT 10.x to 11.x", docs.nvidia.com/deeplearning/
tensorrt/latest/api/migration/tensorrt-10x-to-11x-python-api-reference.html).

TensorRT cannot be installed on the project's CI machines; everything here that does not need the
library (profiles, names, sidecar, tolerances, the API checks on stand-ins) is tested there.
"""

from __future__ import annotations

import logging
import os
import weakref
from pathlib import Path

import numpy as np

from exporters.export.options import BatchProfile, TensorRTOptions, VerifyOptions
from exporters.export.tensorrt_plan import (
    FRAME_PLAN_NAME,
    check_tensorrt_version,
    frame_profile_shapes,
    plan_filename,
    profile_shapes,
    sidecar,
    tensorrt_image,
    timing_cache_path,
    write_sidecar,
)
from exporters.export.tolerances import TOLERANCES
from serving.errors import ExportError, MissingDependencyError
from serving.spec import ModelSpec

log = logging.getLogger(__name__)

_NP_DTYPES = {"uint8": np.uint8, "int32": np.int32, "float16": np.float16, "float32": np.float32}


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as exc:
        err = MissingDependencyError("tensorrt", "export")
        # no extra brings TensorRT: say where it comes from (ImportError's str() reads .msg)
        err.msg = (
            "tensorrt is not installed: build engines inside the NGC TensorRT image of the target "
            f"release ({tensorrt_image()}, as `percept export --engine tensorrt --print-docker` prints) "
            "or `pip install` the target's TensorRT (serving/ngc.py) on a machine with an NVIDIA GPU"
        )
        err.args = (err.msg,)
        raise err from exc
    check_tensorrt_version(str(trt.__version__))
    return trt


# --- what the installed TensorRT has (pure: checked on stand-ins) --------------------------------
# TensorRT 10.x Python API names the weak-typing path uses; TensorRT 11 removed each of them
# (BuilderFlag.FP16/INT8, IBuilderConfig.int8_calibrator / set_calibration_profile,
# IInt8EntropyCalibrator2: the 10.x -> 11.x Python API migration page above).
_WEAK_FLAGS = {"fp16": ("FP16",), "int8": ("FP16", "INT8")}
_WEAK_CONFIG = {"int8": ("int8_calibrator", "set_calibration_profile")}


def weak_typing_missing(trt, config, precision: str) -> list[str]:
    """The weak-typing API names a ``precision`` build needs that the installed TensorRT lacks."""
    missing = [f"BuilderFlag.{f}" for f in _WEAK_FLAGS.get(precision, ()) if not hasattr(trt.BuilderFlag, f)]
    missing += [f"IBuilderConfig.{a}" for a in _WEAK_CONFIG.get(precision, ()) if not hasattr(config, a)]
    if precision == "int8" and not hasattr(trt, "IInt8EntropyCalibrator2"):
        missing.append("IInt8EntropyCalibrator2")
    return missing


def check_weak_typing(trt, config, precision: str) -> None:
    missing = weak_typing_missing(trt, config, precision)
    if missing:
        raise ExportError(
            f"TensorRT {trt.__version__} has no weakly typed {precision} build ({', '.join(missing)} "
            f"removed): export a {precision}-typed ONNX (`percept export --engine onnx --precision "
            f"{precision}`) and build it strongly typed"
        )


def network_flags(trt, typed: bool) -> int:
    """Creation flags: STRONGLY_TYPED for a typed build where the enum has it (10.x); TensorRT 11
    networks are strongly typed without a flag. Explicit batch is the only mode since 10.0."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None) if typed else None
    return 1 << int(flag) if flag is not None else 0


# --- building (needs TensorRT) --------------------------------------------------------------------
def _device() -> tuple[str, tuple[int, int]]:
    from exporters.export.cuda_buffers import device

    return device(0)


def build_engine(
    onnx_path: Path, out_dir: Path, spec: ModelSpec, options: TensorRTOptions, frame: bool = False
) -> Path:
    """Build, write raw under a temporary name, return it (the caller verifies and renames).
    ``frame``: the frame engine (serving.frame_graph around the network's TensorRT variant, a
    profile over frame sizes too), written as ``frame_sm<cc>.plan``."""
    from exporters.export.onnx_export import file_sha256, read_provenance
    from exporters.export.trt_compat import compat_stage
    from exporters.export.trt_variant import variant_path

    trt = import_tensorrt()
    gpu_name, cc = _device()
    typed = strongly_typed(read_provenance(onnx_path), options)
    if options.precision == "int8" and not typed:
        assert options.calibration is not None  # checked by TensorRTOptions
        check_calibration_batch(options.calibration.batch, options.profile.opt)
    # TensorRT parses the variant with EfficientNMS_TRT in place of the ONNX NMS (trt_variant.py):
    # the compatibility stage writes it and fails on any error finding
    compat_stage(onnx_path, "tensorrt")
    variant = variant_path(onnx_path)
    if frame:
        from exporters.export.tensorrt_frame import write_frame_variant

        variant = write_frame_variant(variant, spec)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # the parser owns the weights the network points at: it stays alive until the build is done
    network, parser = parse_onnx(trt, builder, logger, variant, typed)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    profile = builder.create_optimization_profile()
    shapes = frame_profile_shapes(spec, options.profile) if frame else profile_shapes(spec, options.profile)
    for name, (lo, opt, hi) in shapes.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    onnx_sha256 = file_sha256(onnx_path)
    # a strongly typed network takes its precision from the ONNX's types: no precision flags, no
    # calibrator (the QDQ scales are in the file)
    calibrator = None if typed else _set_precision(trt, builder, config, profile, spec, options, onnx_sha256)
    cache_path = None
    if options.timing_cache is not None:
        cache_path = timing_cache_path(Path(options.timing_cache), cc, str(trt.__version__))
    _load_timing_cache(config, cache_path)
    log.info("building %s TensorRT engine for %s (sm%d%d)", options.precision, gpu_name, *cc)
    serialized = builder.build_serialized_network(network, config)
    if calibrator is not None:  # TensorRT swallows exceptions raised in get_batch: re-raise here
        calibrator.feed.raise_if_failed()
    if serialized is None:
        raise ExportError(
            f"TensorRT failed to build a {options.precision} engine from {variant} (see its log)"
        )
    del parser
    if cache_path is not None:  # the build added its timings to the config's cache
        _save(cache_path, bytes(config.get_timing_cache().serialize()))
    final = out_dir / plan_filename(FRAME_PLAN_NAME if frame else options.plan_name, cc)
    staging = final.with_name(final.name + ".unverified")
    _save(staging, bytes(serialized))  # raw: no header, exactly what Triton loads
    doc = sidecar(spec, options, trt.__version__, gpu_name, cc, onnx_sha256)
    doc["tensorrt_onnx"] = {"file": variant.name, "sha256": file_sha256(variant)}
    write_sidecar(staging, doc)
    return staging


def parse_onnx(trt, builder, logger, path: Path, typed: bool):
    """(network, parser) of the ONNX file ``path``; ExportError listing every parser error (node,
    operator, description) when TensorRT cannot parse it. ``typed``: a strongly typed network
    (``NetworkDefinitionCreationFlag.STRONGLY_TYPED``; explicit batch is the only mode in 10.x)."""
    # registers EfficientNMS_TRT & co. for the parser's plugin fallback (Triton's tensorrt backend
    # does the same at load: initLibNvInferPlugins in triton-inference-server/tensorrt_backend)
    trt.init_libnvinfer_plugins(logger, "")
    network = builder.create_network(network_flags(trt, typed))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(path)):
        errors = [parser_error_line(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ExportError(f"TensorRT cannot parse {path}: " + "; ".join(errors))
    return network, parser


def parser_error_line(error) -> str:
    """One line per ``ParserError``: the node (index, name, operator where the binding has them)
    and the description."""
    where = f"node {error.node()}"
    for attr in ("node_name", "node_operator"):  # TensorRT >= 10.0 bindings
        value = getattr(error, attr, None)
        if callable(value) and value():
            where += f" {value()}"
    return f"{where}: {error.code()}: {error.desc()}"


def strongly_typed(provenance: dict, options: TensorRTOptions) -> bool:
    """Whether to build a strongly typed network: the ONNX carries its precision (an FP16-typed or
    QDQ INT8 file of exporters.export.precision, provenance ``precision``), the path TensorRT 11
    keeps. The options must say the same: ExportError otherwise (asked FP16 flags on an INT8 file,
    or a typed build of an FP32 file, would silently build something else)."""
    own = provenance.get("precision", "fp32")
    if own == "fp32":
        if options.strongly_typed:
            raise ExportError("a strongly typed build needs an FP16-typed or QDQ INT8 ONNX; this one is FP32")
        return False
    if own != options.precision or not options.strongly_typed:
        raise ExportError(
            f"the ONNX is {own}-typed: build it strongly typed as {own} "
            f"(TensorRTOptions(precision={own!r}, strongly_typed=True)), not as {options.precision}"
        )
    return True


def check_calibration_batch(calibration_batch: int, opt_batch: int) -> None:
    """TensorRT runs INT8 calibration at the calibration profile's OPT shape, whatever
    ``get_batch_size`` says: a larger calibration batch would be half ignored, a smaller one read
    past its buffers. So the two must be equal (issue 13, finding 5)."""
    if calibration_batch != opt_batch:
        raise ExportError(
            f"INT8 calibration batch {calibration_batch} != the profile's opt batch {opt_batch}: "
            "TensorRT calibrates at the opt shape; give both the same value"
        )


def _set_precision(
    trt, builder, config, profile, spec: ModelSpec, options: TensorRTOptions, onnx_sha256: str
):
    """Set the precision flags; returns the INT8 calibrator (None otherwise), whose feed keeps any
    exception of ``get_batch`` for the caller to re-raise after the build."""
    if options.precision == "fp32":
        if hasattr(trt.BuilderFlag, "TF32"):  # asked FP32, get FP32: TF32 matmuls are on by default
            config.clear_flag(trt.BuilderFlag.TF32)
        return None
    check_weak_typing(trt, config, options.precision)
    if not getattr(builder, "platform_has_fast_fp16", True):
        raise ExportError("this GPU has no fast FP16; build fp32 instead")
    config.set_flag(trt.BuilderFlag.FP16)
    if options.precision == "int8":
        if not getattr(builder, "platform_has_fast_int8", True):
            raise ExportError("this GPU has no fast INT8; build fp16 instead")
        from exporters.export.calibration import make_calibrator

        assert options.calibration is not None  # checked by TensorRTOptions
        config.set_flag(trt.BuilderFlag.INT8)
        calibrator = make_calibrator(spec, options.calibration, onnx_sha256, options.profile.opt)
        config.int8_calibrator = calibrator
        if not config.set_calibration_profile(profile):
            raise ExportError("TensorRT refused the calibration profile")
        return calibrator
    return None


def _load_timing_cache(config, path: Path | None):
    data = Path(path).read_bytes() if path is not None and Path(path).is_file() else b""
    cache = config.create_timing_cache(data)
    # returns False when the cache does not fit this builder (IBuilderConfig::setTimingCache)
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        raise ExportError(
            f"TensorRT refused the timing cache {path} (built by another TensorRT or GPU?); delete it"
        )
    return cache


def _save(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# --- running (needs TensorRT + a GPU) -------------------------------------------------------------
def trt_runner(plan: Path, spec: ModelSpec, profile: BatchProfile, frame: bool = False):
    """A verification runner over a raw engine file; inputs go in chunks within the profile. Device
    memory and the stream come from the CUDA runtime (exporters.export.cuda_buffers), not torch.
    ``frame``: the frame engine's tensors (serving.ensemble.frame_inputs / frame_outputs); its output
    shapes follow from the input shapes, read after they are set."""
    from exporters.export.cuda_buffers import Buffers
    from serving.ensemble import frame_inputs, frame_outputs

    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    # a plan holding EfficientNMS_TRT deserializes only once the plugin library has registered its
    # creators in this process (initLibNvInferPlugins; Triton's tensorrt backend does the same)
    trt.init_libnvinfer_plugins(logger, "")
    engine = trt.Runtime(logger).deserialize_cuda_engine(Path(plan).read_bytes())
    if engine is None:
        raise ExportError(f"TensorRT cannot load the engine {plan}")
    context = engine.create_execution_context()
    min_batch, max_batch = profile.min, profile.max
    # the engine's own tensor types, checked against the spec: buffers are sized from what TensorRT
    # reads and writes, never from what the spec says it should (issue 13, finding 7)
    inputs_of = frame_inputs(spec) if frame else spec.network_inputs
    outputs_of = frame_outputs(spec) if frame else spec.network_outputs
    dtypes = {t.name: engine_dtype(trt, engine, t.name, t.dtype) for t in (*inputs_of, *outputs_of)}
    buffers = Buffers()  # freed with the runner (weakref.finalize below)

    def run_chunk(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for t in inputs_of:
            host = np.ascontiguousarray(inputs[t.name], dtype=dtypes[t.name])
            context.set_input_shape(t.name, tuple(host.shape))
            context.set_tensor_address(t.name, buffers.upload(t.name, host))
        shapes = {}
        for t in outputs_of:
            shapes[t.name] = tuple(context.get_tensor_shape(t.name))
            nbytes = int(np.prod(shapes[t.name])) * dtypes[t.name].itemsize
            context.set_tensor_address(t.name, buffers.pointer(t.name, nbytes))
        if not context.execute_async_v3(buffers.stream_handle):
            raise ExportError(f"TensorRT execution of {plan} failed")
        buffers.synchronize()
        return {name: buffers.download(name, shape, dtypes[name]) for name, shape in shapes.items()}

    def run_padded(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(next(iter(inputs.values())))
        if n >= min_batch:
            return run_chunk(inputs)
        # below the profile's min batch: repeat the last image, drop the extra rows afterwards
        pad = {k: np.concatenate([v, np.repeat(v[-1:], min_batch - n, axis=0)]) for k, v in inputs.items()}
        return {k: v[:n] for k, v in run_chunk(pad).items()}

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(next(iter(inputs.values())))
        chunks = [{k: v[i : i + max_batch] for k, v in inputs.items()} for i in range(0, n, max_batch)]
        parts = [run_padded(chunk) for chunk in chunks]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    weakref.finalize(run, buffers.close)
    return run


def engine_dtype(trt, engine, name: str, spec_dtype: str) -> np.dtype:
    """numpy dtype of an engine tensor (``engine.get_tensor_dtype``); ExportError when it is not
    the spec's."""
    got = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
    check_tensor_dtype(name, got, spec_dtype)
    return got


def check_tensor_dtype(name: str, engine_dtype: np.dtype, spec_dtype: str) -> None:
    if np.dtype(engine_dtype) != np.dtype(_NP_DTYPES[spec_dtype]):
        raise ExportError(
            f"engine tensor {name} is {np.dtype(engine_dtype).name}, the spec says {spec_dtype}: "
            "the engine does not implement the contract"
        )


def build_and_verify(
    onnx_path: Path,
    out_dir: Path,
    options: TensorRTOptions,
    reference,
    spec: ModelSpec,
    verify_options: VerifyOptions,
    progress: bool = False,
):
    """Build, verify against ``reference`` with the precision's bounds, rename into place.

    Returns (engine path, VerifyReport); a failed verification removes the engine and its sidecar
    and leaves the report for the caller to fail on.
    """
    from exporters.export.verify import verify

    staging = build_engine(onnx_path, out_dir, spec, options)
    staging_sidecar = staging.with_name(staging.name + ".json")
    final = staging.with_name(staging.name[: -len(".unverified")])
    vopts = VerifyOptions(
        verify_options.scenes, verify_options.batch, TOLERANCES[options.precision], verify_options.metrics
    )
    try:
        runner = trt_runner(staging, spec, options.profile)
        report = verify(
            runner, reference, spec, vopts, f"tensorrt {options.precision} vs pytorch", progress=progress
        )
        if report.passed:
            os.replace(staging, final)
            os.replace(staging_sidecar, final.with_name(final.name + ".json"))
    finally:
        staging.unlink(missing_ok=True)
        staging_sidecar.unlink(missing_ok=True)
    if report.passed:
        from exporters.export.tensorrt_frame import build_frame_engine

        build_frame_engine(onnx_path, out_dir, options, spec)
    return final, report
