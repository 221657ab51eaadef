"""The rules of the TensorRT compatibility check (exporters.export.trt_compat), one table.

Each rule names the source it was checked against: onnx-tensorrt's own files at its 10.x release
branch (the parser the pinned TensorRT ships) and TensorRT's headers, operator docs and plugin READMEs.
"""

from __future__ import annotations

from dataclasses import dataclass

OPERATORS_MD = "onnx/onnx-tensorrt docs/operators.md (10.x support matrix)"
CHANGELOG_MD = "onnx/onnx-tensorrt docs/Changelog.md"
IMPORTERS_CPP = "onnx/onnx-tensorrt onnxOpImporters.cpp (10.6 GA tree, commit 0137504e)"
DATATYPE_H = "NVIDIA/TensorRT include/NvInferRuntimeBase.h, enum DataType::kUINT8"
NMS_DOC = "https://docs.nvidia.com/deeplearning/tensorrt/archives/tensorrt-1070/operators/docs/NMS.html"
EFFICIENT_NMS_MD = "NVIDIA/TensorRT plugin/efficientNMSPlugin/README.md"
FAQ_MD = "onnx/onnx-tensorrt docs/faq.md (Custom Layer Support: fallbackPluginImporter)"


@dataclass(frozen=True)
class Rule:
    id: str
    severity: str  # "error" | "warning"
    summary: str
    source: str


# The one table of rules. A new rule is a row here plus a check function below.
RULES: dict[str, Rule] = {
    r.id: r
    for r in (
        Rule(
            "TRT001",
            "error",
            "operator not supported by the pinned ONNX parser (and not a known TensorRT plugin)",
            f"{OPERATORS_MD}; ops added after 10.5 per {CHANGELOG_MD}",
        ),
        Rule(
            "TRT002",
            "error",
            "ScatterND with a `reduction` attribute (even 'none'): the importer asserts "
            "!attrs.count(\"reduction\") - 'Attribute reduction is not supported.' (fixed in 10.9)",
            f"{IMPORTERS_CPP}, DEFINE_BUILTIN_OP_IMPORTER(ScatterND); {CHANGELOG_MD} 10.9 "
            "'Fixed support for opset 18+ ScatterND'",
        ),
        Rule(
            "TRT003",
            "error",
            "a UINT8 network input may only feed a Cast to FLOAT/FLOAT16 (kUINT8 is for network I/O; "
            "importers reject UINT8 operands via checkNotInvalidType)",
            f"{DATATYPE_H}; {OPERATORS_MD} note 'UINT8 is only supported as network input or output'",
        ),
        Rule(
            "TRT004",
            "error",
            "graph input/output of a type TensorRT cannot bind (string, complex, unsigned 16/32/64 bit)",
            f"{OPERATORS_MD} 'TensorRT supports the following ONNX data types'",
        ),
        Rule(
            "TRT005",
            "warning",
            "DOUBLE tensor: TensorRT casts it down to FLOAT (clamped to +-FLT_MAX)",
            f"{OPERATORS_MD} note on DOUBLE",
        ),
        Rule(
            "TRT006",
            "error",
            "TopK whose K is not a build-time constant or is >= 3840",
            f"{OPERATORS_MD} TopK restrictions",
        ),
        Rule(
            "TRT007",
            "warning",
            "NonMaxSuppression: TensorRT's INMSLayer considers at most 5000 candidates per image "
            "(2000 on SM 5.3/6.2) where ONNX has no limit, and its selected-indices output has a "
            "data-dependent shape; the TensorRT build uses the EfficientNMS_TRT variant instead",
            NMS_DOC,
        ),
        Rule(
            "TRT008",
            "warning",
            "EfficientNMS_TRT: only the 5000 highest scores above score_threshold reach the NMS "
            "kernel (2000 on GPUs with fewer than 65536 registers per block; ONNX NonMaxSuppression "
            "has no such limit); scores equal to the threshold are kept, and a box is suppressed at "
            "IoU >= iou_threshold where ONNX suppresses only above it",
            EFFICIENT_NMS_MD,
        ),
        Rule(
            "TRT009",
            "error",
            "EfficientNMS_TRT node whose inputs/attributes do not match the plugin's documented "
            "interface (boxes [B,N,4], scores [B,N,C], four outputs, known attributes)",
            f"{EFFICIENT_NMS_MD}; {FAQ_MD}",
        ),
        Rule(
            "TRT011",
            "error",
            "Resize outside TensorRT's modes: coordinate_transformation_mode half_pixel, "
            "pytorch_half_pixel, tf_half_pixel_for_nn, asymmetric or align_corners; mode nearest or "
            "linear; nearest_mode floor, ceil, round_prefer_floor or round_prefer_ceil; no antialias",
            f"{OPERATORS_MD} Resize restrictions",
        ),
        Rule(
            "TRT012",
            "error",
            "pooling with dilations other than all ones",
            f"{OPERATORS_MD} MaxPool / AveragePool / LpPool restrictions",
        ),
        Rule(
            "TRT010",
            "warning",
            "INT64 network input/output: TensorRT >= 9 binds it as INT64 (no implicit cast to INT32)",
            f"{CHANGELOG_MD} 9.0 EA",
        ),
    )
}

# Operators the pinned parser imports: the "Y" rows of operators.md on the 10.x branch, less the
# operators its Changelog lists as added after 10.5 (Attention 10.14; RotaryEmbedding,
# RMSNormalization, TensorScatter 10.15).
_SUPPORTED = """
    Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization
    BlackmanWindow Cast CastLike Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose
    Cos Cosh CumSum DeformConv DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp
    Expand EyeLike Flatten Floor Gather GatherElements GatherND Gelu Gemm GlobalAveragePool
    GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample GroupNormalization GRU
    HammingWindow HannWindow HardSigmoid HardSwish Hardmax Identity If ImageScaler
    InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax
    Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean MeanVarianceNormalization Min Mish
    Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad ParametricSoftplus Pow PRelu
    QuantizeLinear RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal
    ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd
    ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RNN RoiAlign Round STFT ScaledTanh
    Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice
    Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile
    TopK Transpose Trilu Unsqueeze Upsample Where Xor
"""
SUPPORTED_OPS = frozenset(_SUPPORTED.split())

# TensorRT plugins the TensorRT build may use; the parser's fallback importer maps a node whose
# op_type is the plugin name onto the registered creator (FAQ_MD).
KNOWN_PLUGINS = frozenset({"EfficientNMS_TRT"})
EFFICIENT_NMS_ATTRS = frozenset(
    {
        "score_threshold",
        "iou_threshold",
        "max_output_boxes",
        "background_class",
        "score_activation",
        "class_agnostic",
        "box_coding",
        "plugin_version",
        "plugin_namespace",
    }
)
TOPK_MAX = 3840
NMS_CANDIDATE_LIMIT = 5000
# EfficientNMSPlugin::initialize (NVIDIA/TensorRT plugin/efficientNMSPlugin/efficientNMSPlugin.cpp):
# numSelectedBoxes 5000 where regsPerBlock >= 65536, else 2000 (Jetson TX1/TX2)
EFFICIENT_NMS_CANDIDATES = 5000
EFFICIENT_NMS_CANDIDATES_SMALL = 2000

# ONNX TensorProto element types
ONNX_FLOAT, ONNX_UINT8, ONNX_INT64, ONNX_DOUBLE, ONNX_FLOAT16 = 1, 2, 7, 11, 10
ONNX_BINDABLE = {1, 2, 3, 6, 7, 9, 10, 16}  # float, uint8, int8, int32, int64, bool, float16, bfloat16
