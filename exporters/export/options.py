"""Options of every export stage: frozen dataclasses, checked on construction.

An option that cannot be honoured is a :class:`SpecError` here, before any work starts
(e.g. INT8 without calibration data, max batch < min batch, an input size not a multiple of 32).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from exporters.networks.registry import check_input_size
from serving.errors import SpecError
from serving.onnx_meta import REDUCED_PRECISIONS
from serving.spec import DEFAULT_INPUT_HW
from serving.tolerances import Tolerances

ENGINES = ("onnx", "tensorrt")
PRECISIONS = ("fp32", *REDUCED_PRECISIONS)
MIN_OPSET = 17


def parse_size(text: str) -> tuple[int, int]:
    """'HEIGHTxWIDTH' -> (height, width), checked to be positive multiples of 32."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        example = "x".join(map(str, DEFAULT_INPUT_HW))
        raise SpecError(f"input size must look like HEIGHTxWIDTH (e.g. {example}), got {text!r}") from None
    return check_size((h, w))


def check_size(hw: tuple[int, int]) -> tuple[int, int]:
    """`percept export --size` exports a registered network: its backbone's stride rule applies."""
    return check_input_size((int(hw[0]), int(hw[1])))


@dataclass(frozen=True)
class BatchProfile:
    """The dynamic batch range: ONNX's dynamic axis, TensorRT's one optimisation profile."""

    min: int = 1
    opt: int = 4
    max: int = 8

    def __post_init__(self) -> None:
        if self.min < 1:
            raise SpecError(f"min batch must be >= 1, got {self.min}")
        if self.max < self.min:
            raise SpecError(f"max batch {self.max} < min batch {self.min}")
        if not self.min <= self.opt <= self.max:
            raise SpecError(f"opt batch {self.opt} must lie in min..max = {self.min}..{self.max}")

    def as_dict(self) -> dict[str, int]:
        return {"min": self.min, "opt": self.opt, "max": self.max}


@dataclass(frozen=True)
class OnnxOptions:
    # None: the export's batch profile (ExportOptions.profile), BatchProfile() when used on its own;
    # the ONNX records it in its provenance ("batch_profile"), where the TensorRT stage and
    # `repo build` read it back
    profile: BatchProfile | None = None
    opset: int = 18
    simplify: bool = True  # onnxscript optimizer pass (constant folding, dead code) after export
    checkpoint: Path | None = None  # recorded (sha256) in the provenance

    def __post_init__(self) -> None:
        if self.opset < MIN_OPSET:
            raise SpecError(f"opset must be >= {MIN_OPSET}, got {self.opset}")

    @property
    def batch_profile(self) -> BatchProfile:
        return self.profile if self.profile is not None else BatchProfile()


@dataclass(frozen=True)
class VerifyOptions:
    scenes: int = 100  # validation-split scenes: per-head comparison and metric parity on all of them
    batch: int = 4
    tolerances: Tolerances = field(default_factory=Tolerances)
    metrics: bool = True  # metric parity via exporters.evaluation (needs world ground truth)

    def __post_init__(self) -> None:
        if self.scenes < 1:
            raise SpecError(f"verification needs at least 1 scene, got {self.scenes}")
        if self.batch < 1:
            raise SpecError(f"verification batch must be >= 1, got {self.batch}")


# INT8 ONNX (`--engine onnx`): onnxruntime calibrates on the CPU, measured ~1 s per 384x640 frame
# on an idle 2-core host; 128 world frames met every INT8 bound on cam-n (README). TensorRT
# calibrates on the GPU and keeps CalibrationOptions' 512.
ONNX_CALIBRATION_IMAGES = 128


@dataclass(frozen=True)
class CalibrationOptions:
    """INT8 calibration data: ``source`` is "world" (seeded scenes) or a folder of images
    (a KITTI-style sequence folder for fusion networks)."""

    source: str | Path = "world"
    images: int = 512
    batch: int = 8
    cache: Path | None = None  # read when present (skips calibration), written after calibration
    seed: int = 0
    method: str = "entropy"  # "entropy" | "percentile" (the ONNX INT8 path; TensorRT's is entropy)

    def __post_init__(self) -> None:
        if self.method not in ("entropy", "percentile"):
            raise SpecError(f"calibration method must be entropy or percentile, got {self.method!r}")
        if self.images < 1 or self.batch < 1:
            raise SpecError(f"calibration needs images >= 1 and batch >= 1, got {self.images}, {self.batch}")
        if self.source != "world" and not Path(self.source).is_dir():
            raise SpecError(f"calibration source {str(self.source)!r} is neither 'world' nor a folder")


@dataclass(frozen=True)
class TensorRTOptions:
    profile: BatchProfile = field(default_factory=BatchProfile)
    precision: str = "fp16"
    workspace_mib: int = 2048
    calibration: CalibrationOptions | None = None
    timing_cache: Path | None = None  # read when present, updated after the build
    plan_name: str = "model.plan"  # becomes model_sm<cc>.plan
    # build from an FP16-typed / QDQ INT8 ONNX (exporters.export.precision) as a strongly typed
    # network: the precision is the file's, no builder flags, no calibrator
    strongly_typed: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise SpecError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.strongly_typed and (self.precision == "fp32" or self.calibration is not None):
            raise SpecError("a strongly typed build reads fp16/int8 from the ONNX: no calibration, not fp32")
        if self.precision == "int8" and self.calibration is None and not self.strongly_typed:
            raise SpecError("INT8 needs calibration data (--calibration world|IMAGE_DIR)")
        if self.workspace_mib < 64:
            raise SpecError(f"workspace must be >= 64 MiB, got {self.workspace_mib}")
        if not self.plan_name.endswith(".plan"):
            raise SpecError(f"engine file name must end in .plan, got {self.plan_name!r}")


@dataclass(frozen=True)
class ExportOptions:
    """Everything `percept export` does, for the orchestrator in run.py.

    ``profile`` and ``checkpoint`` are given here once; ``onnx`` (built when None) inherits them and
    the TensorRT options must agree, so the stages cannot see two different profiles.
    """

    network: str
    out_dir: Path
    checkpoint: Path | None = None  # None: random init (seeded), see run.load_network
    input_hw: tuple[int, int] | None = None  # None: the checkpoint's size, else the spec default
    profile: BatchProfile = field(default_factory=BatchProfile)
    engine: str = "onnx"
    precision: str = "fp32"
    verify: VerifyOptions = field(default_factory=VerifyOptions)
    onnx: OnnxOptions | None = None  # None: OnnxOptions() with this profile and checkpoint
    tensorrt: TensorRTOptions | None = None
    seed: int = 0  # random init when there is no checkpoint
    # engine onnx, precision fp16/int8: model.<precision>.onnx beside the FP32 model.onnx
    calibration: CalibrationOptions | None = None  # INT8 ONNX (QDQ) calibration data
    bounds: Tolerances | None = None  # None: exporters.export.tolerances.TOLERANCES[precision]

    def __post_init__(self) -> None:
        if self.input_hw is not None:
            check_size(self.input_hw)
        if self.engine not in ENGINES:
            raise SpecError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.precision not in PRECISIONS:
            raise SpecError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.engine == "onnx" and self.precision == "int8" and self.calibration is None:
            raise SpecError("INT8 needs calibration data (--calibration world|IMAGE_DIR)")
        if self.calibration is not None and not (self.engine == "onnx" and self.precision == "int8"):
            raise SpecError("calibration options are for --engine onnx --precision int8")
        if self.bounds is not None and not (self.engine == "onnx" and self.precision != "fp32"):
            raise SpecError("reduced-precision bounds are for --engine onnx --precision fp16|int8")
        if self.engine == "tensorrt" and self.tensorrt is None:
            raise SpecError("engine tensorrt needs TensorRT options")
        if self.tensorrt is not None and self.tensorrt.precision != self.precision:
            raise SpecError(f"precision {self.precision} but TensorRT options say {self.tensorrt.precision}")
        if self.tensorrt is not None and self.tensorrt.profile != self.profile:
            raise SpecError("the TensorRT profile must be the export's batch profile")
        if self.onnx is not None and self.onnx.profile not in (None, self.profile):
            raise SpecError("the ONNX profile must be the export's batch profile")
        if self.onnx is not None and self.onnx.checkpoint not in (None, self.checkpoint):
            raise SpecError("the ONNX options name another checkpoint than the export")
        if self.checkpoint is not None and not Path(self.checkpoint).is_file():
            raise SpecError(f"checkpoint {str(self.checkpoint)!r} does not exist")
        onnx = replace(self.onnx or OnnxOptions(), profile=self.profile, checkpoint=self.checkpoint)
        object.__setattr__(self, "onnx", onnx)  # frozen: the one derived copy, set once here
