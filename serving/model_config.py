"""config.pbtxt generation from a ModelSpec, with Triton's own protobuf schema.

Every config is built as a ``tritonclient.grpc.model_config_pb2.ModelConfig`` message and written
with ``google.protobuf.text_format``, so a field Triton does not know cannot be written at all;
:func:`parse_config` reads one back the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from serving import spec as S
from serving.ensemble import (
    FrameLimits,
    decode_outputs,
    frame_inputs,
    frame_outputs,
    pipeline_inputs,
    pipeline_outputs,
)
from serving.errors import MissingDependencyError, ServingError
from serving.ort_session import OrtSettings
from serving.spec import SPEC_KEY, ModelSpec, TensorSpec

ENGINES = ("python", "onnxruntime", "tensorrt_plan")
_MODEL_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def _pb():
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError as exc:  # pragma: no cover - tritonclient is in the server extra
        raise MissingDependencyError("tritonclient[grpc]", "server") from exc
    return model_config_pb2


@dataclass(frozen=True)
class BatchingOptions:
    """Dynamic batching of the network model (README "Serving" has the measurements).

    max_batch_size 8 matches the export's default batch profile (a TensorRT engine's max batch).
    No queue delay: under load, batches form anyway from the requests that queue while the
    instances are busy; a delay only makes a lone request wait. Measured on the 2-core CPU with
    cam-n: 0 vs 2 ms gave concurrency-1 p50 18.4-18.9 vs 20.9 ms and concurrency-8 throughput
    56-59 vs 58 frames/s (average batch 2.5 vs 3.0). No preferred sizes: on CPU the cost per image
    is flat in the batch size, so waiting for a preferred size only adds latency. On a GPU engine,
    where a batch costs little more than one image, measure a delay of 0.1-1 ms.
    """

    max_batch_size: int = 8
    max_queue_delay_us: int = 0
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_size: int = 64  # beyond this, requests are rejected at once (UNAVAILABLE)
    queue_timeout_us: int = 5_000_000  # a request queued longer is rejected; clients may override
    # False: no dynamic batcher on the network model, each request runs alone (a client may still
    # send batches up to max_batch_size); the baseline `make bench` compares batching against
    dynamic: bool = True

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ServingError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if self.max_queue_delay_us < 0 or self.max_queue_size < 0 or self.queue_timeout_us < 0:
            raise ServingError("queue delay, queue size and queue timeout must be >= 0")
        bad = [b for b in self.preferred_batch_sizes if not 1 <= b <= self.max_batch_size]
        if bad:
            raise ServingError(f"preferred batch sizes {bad} outside 1..max_batch_size={self.max_batch_size}")


@dataclass(frozen=True)
class RepositoryOptions:
    engine: str = "python"
    batching: BatchingOptions = field(default_factory=BatchingOptions)
    network_instances: int = 2  # measured: 1.6x the throughput of one instance at concurrency 8
    frame_instances: int = 2  # the frame model's (the network's run is most of its time)
    decode_instances: int = 1
    intra_op_threads: int = 2  # ONNX Runtime threads per network instance (python/onnxruntime engines)
    allow_spinning: bool = False  # ONNX Runtime worker threads busy-wait between ops (python engine)
    limits: FrameLimits = field(default_factory=FrameLimits)
    warmup: bool = True
    ensembles: bool = True
    gpu: bool | None = None  # instance kind of the network; None: GPU for tensorrt_plan/onnxruntime
    link: bool = False  # symlink the ONNX/plan files into the repository instead of copying
    # the frame model's file is the frame graph (letterbox and postprocess in the graph); None: yes for
    # the NGC engines, no for the python engine, which does the same around the network with OpenCV
    # (serving.triton_models.frame: a quarter of ONNX Runtime's Resize on the CPU)
    frame_graph: bool | None = None
    # (network, ensemble) pairs naming a network's ensemble; the network by its model or spec name
    pipeline_names: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        for net, ens in self.pipeline_names:
            for name in (net, ens):
                if not _MODEL_NAME.fullmatch(name):
                    raise ServingError(f"bad model name {name!r}: use letters, digits, '_', '-' or '.'")
        if self.engine not in ENGINES:
            raise ServingError(f"unknown engine {self.engine!r}; choose one of {', '.join(ENGINES)}")
        for name in (
            "network_instances",
            "frame_instances",
            "decode_instances",
            "intra_op_threads",
        ):
            if getattr(self, name) < 1:
                raise ServingError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.engine == "tensorrt_plan" and self.gpu is False:
            raise ServingError("the tensorrt_plan engine runs on a GPU only (gpu=False asked)")
        if self.engine == "python" and self.gpu:
            raise ServingError("the python engine runs ONNX Runtime on the CPU; use onnxruntime for a GPU")

    @property
    def network_on_gpu(self) -> bool:
        return self.gpu if self.gpu is not None else self.engine != "python"

    @property
    def frame_as_graph(self) -> bool:
        return self.frame_graph if self.frame_graph is not None else self.engine != "python"


# --- names ------------------------------------------------------------------------------------
def network_model_name(spec: ModelSpec) -> str:
    return spec.name.replace("-", "_")


def frame_model_name(spec: ModelSpec) -> str:
    return f"{network_model_name(spec)}_frame"


def decode_model_name(spec: ModelSpec) -> str:
    return f"{network_model_name(spec)}_decode"


PIPELINE_SUFFIX = "_pipeline"


def ensemble_name(spec: ModelSpec) -> str:
    """The ensemble of ``spec`` when it is the first network of its kind in a repository."""
    return pipeline_names([spec])[network_model_name(spec)]


def pipeline_names(specs: list[ModelSpec], overrides: tuple[tuple[str, str], ...] = ()) -> dict[str, str]:
    """Network model name -> its ensemble's name, for the networks of one repository, in order.

    An override (``RepositoryOptions.pipeline_names``) wins; otherwise the first camera and the
    first fusion network with every head keep the demo's ``perception`` / ``perception_fusion``,
    and every other network's ensemble is its model name + ``_pipeline``.
    """
    nets = {network_model_name(s): s for s in specs}
    given: dict[str, str] = {}
    for net, ens in overrides:
        key = net if net in nets else net.replace("-", "_")
        if key not in nets:
            raise ServingError(f"--name {net}={ens}: no network {net!r} among {', '.join(nets)}")
        given[key] = ens
    names: dict[str, str] = {}
    taken: set[bool] = set()
    for net, spec in nets.items():
        if net in given:
            names[net] = given[net]
        elif set(spec.tasks) == set(S.TASKS) and spec.fusion not in taken:
            names[net] = S.ENSEMBLE_FUSION if spec.fusion else S.ENSEMBLE_CAMERA
            taken.add(spec.fusion)
        else:
            names[net] = net + PIPELINE_SUFFIX
    values = list(names.values())
    others = {n + stage for n in nets for stage in ("", "_frame", "_decode")}
    clash = {n for n in values if values.count(n) > 1} | (set(values) & others)
    if clash:
        raise ServingError(f"two models would be named {', '.join(sorted(clash))}: give --name NET=ENSEMBLE")
    return names


def _internal(name: str, stage: str) -> str:
    # ensemble-internal tensor of `stage`, distinct from the ensemble's own inputs/outputs
    return f"{name}__{stage}"


# --- building blocks --------------------------------------------------------------------------
def _io(pb, message, tensor: TensorSpec, batched: bool, ragged: bool = False, reshape: bool = True):
    msg = message(name=tensor.name, data_type=getattr(pb, tensor.triton_dtype))
    dims = tensor.triton_dims(batched)
    if not dims:  # a [batch] tensor: Triton needs dims [1], reshaped to [] for the model itself
        msg.dims.append(1)
        if reshape:
            msg.reshape.SetInParent()
    else:
        msg.dims.extend(dims)
    if message is pb.ModelInput:
        if tensor.optional:
            msg.optional = True
        if ragged:
            msg.allow_ragged_batch = True
    return msg


def _inputs(pb, cfg, tensors, ragged: bool = False, reshape: bool = True) -> None:
    for t in tensors:
        has_dynamic = any(d == -1 for d in t.triton_dims(True))
        cfg.input.append(_io(pb, pb.ModelInput, t, True, ragged and has_dynamic, reshape))


def _outputs(pb, cfg, tensors, reshape: bool = True) -> None:
    # an ensemble has no model of its own: it sees the [batch, 1] that its steps present
    for t in tensors:
        cfg.output.append(_io(pb, pb.ModelOutput, t, True, reshape=reshape))


def _param(cfg, key: str, value) -> None:
    cfg.parameters[key].string_value = str(value)


def _instances(pb, cfg, count: int, gpu: bool = False) -> None:
    kind = pb.ModelInstanceGroup.KIND_GPU if gpu else pb.ModelInstanceGroup.KIND_CPU
    cfg.instance_group.append(pb.ModelInstanceGroup(count=count, kind=kind))


def _latest_version(pb, cfg) -> None:
    cfg.version_policy.latest.num_versions = 1


def _dynamic_batching(pb, cfg, batching: BatchingOptions | None) -> None:
    if batching is not None and not batching.dynamic:
        return
    db = cfg.dynamic_batching
    if batching is None:  # pre/postprocess: take whatever is queued, never wait
        db.SetInParent()
        return
    db.max_queue_delay_microseconds = batching.max_queue_delay_us
    db.preferred_batch_size.extend(batching.preferred_batch_sizes)
    policy = db.default_queue_policy
    policy.timeout_action = pb.ModelQueuePolicy.REJECT
    policy.default_timeout_microseconds = batching.queue_timeout_us
    policy.allow_timeout_override = True
    policy.max_queue_size = batching.max_queue_size


# --- the models -------------------------------------------------------------------------------
def _engine(cfg, options: RepositoryOptions, plan_files: dict[str, str] | None) -> None:
    if options.engine == "python":
        cfg.backend = "python"
        ort = OrtSettings(intra_op_threads=options.intra_op_threads, allow_spinning=options.allow_spinning)
        for key, value in ort.to_parameters().items():
            _param(cfg, key, value)
    elif options.engine == "onnxruntime":
        cfg.platform = "onnxruntime_onnx"
        cfg.default_model_filename = "model.onnx"
        _param(cfg, "intra_op_thread_count", options.intra_op_threads)
    else:
        cfg.platform = "tensorrt_plan"
        if not plan_files:
            raise ServingError("the tensorrt_plan engine needs at least one engine file (model_sm<cc>.plan)")
        for cc, filename in sorted(plan_files.items()):
            cfg.cc_model_filenames[cc] = filename
        # the newest architecture by number: "10.0" after "9.0" (a string sort puts "9.0" last)
        newest = max(plan_files, key=lambda cc: tuple(int(p) for p in cc.split(".")))
        cfg.default_model_filename = plan_files[newest]


def _warmup(pb, cfg, inputs: tuple[TensorSpec, ...], sizes: dict[str, int]) -> None:
    """One zero request of batch 1; a dynamic dimension takes its size from ``sizes``."""
    warm = pb.ModelWarmup(name="zeros_batch_1", batch_size=1)
    for t in inputs:
        warm.inputs[t.name].data_type = getattr(pb, t.triton_dtype)
        dims = [d if isinstance(d, int) else sizes[d] for d in t.dims[1:]]
        warm.inputs[t.name].dims.extend(dims)
        if t.name == S.SOURCE_HW:  # zeros would be refused: a source of the warm-up frame's size
            warm.inputs[t.name].input_data_file = _WARMUP_SOURCE
        else:
            warm.inputs[t.name].zero_data = True
    cfg.model_warmup.append(warm)


# the frame model's warm-up frame (a 720p frame, the common camera size) and the file holding its
# source_hw (int32 720, 1280) under the model's warmup/ folder (repository.write_configs writes it)
WARMUP_FRAME_HW = (720, 1280)
_WARMUP_SOURCE = "source_hw"


def warmup_files() -> dict[str, bytes]:
    """The frame model's warmup/ folder: file name -> raw little-endian bytes (Triton's format)."""
    import numpy as np

    return {_WARMUP_SOURCE: np.array(WARMUP_FRAME_HW, "<i4").tobytes()}


def network_config(spec: ModelSpec, options: RepositoryOptions, plan_files: dict[str, str] | None = None):
    pb = _pb()
    cfg = pb.ModelConfig(name=network_model_name(spec), max_batch_size=options.batching.max_batch_size)
    _engine(cfg, options, plan_files)
    _inputs(pb, cfg, spec.network_inputs)
    _outputs(pb, cfg, spec.network_outputs)
    _dynamic_batching(pb, cfg, options.batching)
    _instances(pb, cfg, options.network_instances, options.network_on_gpu)
    _latest_version(pb, cfg)
    if options.warmup:
        _warmup(pb, cfg, spec.network_inputs, {})
    _param(cfg, SPEC_KEY, spec.to_json())
    return cfg


def frame_config(spec: ModelSpec, options: RepositoryOptions, plan_files: dict[str, str] | None = None):
    """The frame model (serving.frame_graph): a raw frame of any size in, source-pixel results out;
    batched like the network (equal frame sizes only: Triton batches equal shapes)."""
    pb = _pb()
    cfg = pb.ModelConfig(name=frame_model_name(spec), max_batch_size=options.batching.max_batch_size)
    _engine(cfg, options, plan_files)
    _inputs(pb, cfg, frame_inputs(spec))
    _outputs(pb, cfg, frame_outputs(spec))
    _dynamic_batching(pb, cfg, options.batching)
    _instances(pb, cfg, options.frame_instances, options.network_on_gpu)
    _latest_version(pb, cfg)
    if options.warmup:
        _warmup(pb, cfg, frame_inputs(spec), {"height": WARMUP_FRAME_HW[0], "width": WARMUP_FRAME_HW[1]})
    _param(cfg, SPEC_KEY, spec.to_json())
    for key, value in options.limits.to_parameters().items():
        _param(cfg, key, value)
    return cfg


def decode_config(spec: ModelSpec, options: RepositoryOptions):
    pb = _pb()
    cfg = pb.ModelConfig(
        name=decode_model_name(spec), backend="python", max_batch_size=options.batching.max_batch_size
    )
    _inputs(pb, cfg, pipeline_inputs(spec), ragged=True)
    _outputs(pb, cfg, decode_outputs(spec))
    _dynamic_batching(pb, cfg, None)
    _instances(pb, cfg, options.decode_instances)
    _latest_version(pb, cfg)
    _param(cfg, SPEC_KEY, spec.to_json())
    for key, value in options.limits.to_parameters().items():
        _param(cfg, key, value)
    return cfg


def ensemble_config(spec: ModelSpec, options: RepositoryOptions, name: str | None = None):
    """decode -> frame model; the ensemble's inputs/outputs are the pipeline tensors (outputs only
    for the heads ``spec`` has). ``name``: default :func:`ensemble_name`."""
    pb = _pb()
    cfg = pb.ModelConfig(
        name=name or ensemble_name(spec), platform="ensemble", max_batch_size=options.batching.max_batch_size
    )
    _inputs(pb, cfg, pipeline_inputs(spec), reshape=False)
    _outputs(pb, cfg, pipeline_outputs(spec), reshape=False)
    steps = cfg.ensemble_scheduling
    decode = steps.step.add(model_name=decode_model_name(spec), model_version=-1)
    for t in pipeline_inputs(spec):
        decode.input_map[t.name] = t.name
    for t in decode_outputs(spec):
        decode.output_map[t.name] = _internal(t.name, "decoded")
    frame = steps.step.add(model_name=frame_model_name(spec), model_version=-1)
    for t in frame_inputs(spec):
        frame.input_map[t.name] = _internal(t.name, "decoded")
    for t in pipeline_outputs(spec):
        frame.output_map[t.name] = t.name
    _param(cfg, SPEC_KEY, spec.to_json())
    return cfg


# --- text -------------------------------------------------------------------------------------
def config_text(cfg) -> str:
    from google.protobuf import text_format

    return text_format.MessageToString(cfg)


def parse_config(text: str):
    from google.protobuf import text_format

    return text_format.Parse(text, _pb().ModelConfig())
