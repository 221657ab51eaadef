"""Strongly typed reduced precision: FP16-typed and QDQ INT8 ONNX files of the shipped cam-n,
checked for their types and Q/DQ placement, verified in ONNX Runtime with the precision's bounds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from exporters.export.options import (
    BatchProfile,
    CalibrationOptions,
    ExportOptions,
    Tolerances,
    VerifyOptions,
)
from serving.errors import ExportError, SpecError

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

HW = (192, 320)  # the shipped weights find objects here (at 128x224 they find none)
SCENES = 8


def _options(out: Path, precision: str, **kwargs) -> ExportOptions:
    from exporters.weights import shipped_checkpoint

    return ExportOptions(
        network="cam-n",
        out_dir=out,
        checkpoint=shipped_checkpoint("cam-n"),
        input_hw=HW,
        profile=BatchProfile(1, 2, 4),
        precision=precision,
        verify=VerifyOptions(scenes=SCENES, batch=4),
        **kwargs,
    )


@pytest.fixture(scope="module")
def fp16_export(tmp_path_factory):
    """One export of FP32 + FP16 ONNX (the FP32 file is the source of every test below)."""
    from exporters.export.run import run_export

    out = tmp_path_factory.mktemp("precision") / "cam-n"
    return out, run_export(_options(out, "fp16"))


@pytest.fixture(scope="module")
def reference():
    from exporters.export.graph import build_export_graph, run_eager
    from exporters.export.run import load_network
    from exporters.weights import shipped_checkpoint

    net = load_network("cam-n", shipped_checkpoint("cam-n"), HW)
    graph = build_export_graph(net, net.spec)
    return net.spec, lambda inputs: run_eager(graph, inputs)


def _value_types(path: Path) -> dict[str, int]:
    import onnx

    proto = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    values = [*proto.graph.value_info, *proto.graph.input, *proto.graph.output]
    types = {v.name: v.type.tensor_type.elem_type for v in values}
    types.update({t.name: t.data_type for t in proto.graph.initializer})
    return types


def test_fp16_onnx_is_fp16_typed_and_keeps_the_contract(fp16_export):
    import onnx

    from exporters.export.onnx_export import check_onnx, read_onnx_spec, read_provenance
    from exporters.export.trt_compat import check_file

    out, _ = fp16_export
    path = out / "model.fp16.onnx"
    spec = read_onnx_spec(path)
    check_onnx(path, spec)  # inputs/outputs: the spec's names, dtypes (uint8 in, FP16 depth) and dims
    proto = onnx.load(str(path))
    types = _value_types(path)
    conv_weights = [n.input[1] for n in proto.graph.node if n.op_type == "Conv"]
    assert conv_weights and all(types[w] == onnx.TensorProto.FLOAT16 for w in conv_weights)
    (cast,) = [n for n in proto.graph.node if "images" in n.input]
    assert cast.op_type == "Cast"  # the uint8 input feeds its Cast, as TensorRT requires
    (nms,) = [n for n in proto.graph.node if n.op_type == "NonMaxSuppression"]
    assert types[nms.input[0]] == types[nms.input[1]] == onnx.TensorProto.FLOAT  # post-processing FP32
    assert read_provenance(path)["precision"] == "fp16"
    assert not [f for f in check_file(path) if f.severity == "error"]


def test_fp16_export_is_verified_with_fp16_bounds_and_reports_per_head_deltas(fp16_export):
    from exporters.export.tolerances import TOLERANCES

    out, result = fp16_export
    assert sorted(p.name for p in out.iterdir()) == ["model.fp16.onnx", "model.onnx", "report.json"]
    assert result.reduced == out / "model.fp16.onnx"
    report = json.loads((out / "report.json").read_text())
    assert report["passed"] and report["artifacts"]["reduced_onnx"] == "model.fp16.onnx"
    fp32, fp16 = report["verification"]
    assert fp16["label"] == "onnxruntime fp16 vs pytorch" and fp16["passed"] and fp16["scenes"] == SCENES
    heads = fp16["heads"]
    assert heads["detection"]["reference"] > 0  # real detections were compared
    for head, key in (("detection", "d_map50"), ("detection", "d_map"), ("segmentation", "d_miou")):
        assert heads[head][key] is not None
    assert heads["depth"]["d_abs_rel"] is not None
    bounds = TOLERANCES["fp16"]
    assert heads["segmentation"]["worst_agreement"] >= bounds.seg_agreement
    assert heads["depth"]["rel_error"] <= bounds.depth_rel_error and heads["depth"]["quantile"] == 0.99
    assert any("fp16" in line for line in result.lines())
    # the serving side (percept tune) reads the same files and deltas without the exporters
    from serving.onnx_meta import accuracy_deltas, precision_variants

    assert precision_variants(out / "model.onnx") == {"fp32": out / "model.onnx", "fp16": result.reduced}
    deltas = accuracy_deltas(out / "model.onnx")["fp16"]
    assert deltas["map50"] == heads["detection"]["d_map50"] and deltas["map"] == heads["detection"]["d_map"]
    assert deltas["miou"] == heads["segmentation"]["d_miou"]


def test_int8_onnx_has_qdq_around_convs_and_none_in_post_processing(fp16_export, tmp_path):
    import onnx
    from onnx import numpy_helper

    from exporters.export.onnx_export import check_onnx, read_onnx_spec
    from exporters.export.precision import postprocessing_nodes, to_int8
    from exporters.export.trt_compat import check_file

    src = fp16_export[0] / "model.onnx"
    spec = read_onnx_spec(src)
    path = to_int8(src, tmp_path / "model.int8.onnx", spec, CalibrationOptions(images=8, batch=4))
    check_onnx(path, spec)
    proto = onnx.load(str(path))
    producers = {o: n for n in proto.graph.node for o in n.output}
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    for conv in convs:  # activation and per-channel weight both dequantized, bias left FP32
        assert [producers[i].op_type for i in conv.input[:2]] == ["DequantizeLinear"] * 2, conv.name
    weights = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            zero_point = weights[node.input[2]]
            assert zero_point.dtype == np.int8 and not zero_point.any()  # symmetric, as TensorRT wants
    qdq = {n.name for n in proto.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")}
    source = onnx.load(str(src))
    post = set(postprocessing_nodes(source))
    assert post and not qdq & post
    post_inputs = {i for n in proto.graph.node if n.name in post for i in n.input}
    assert not {producers[i].op_type for i in post_inputs if i in producers} & {"DequantizeLinear"}
    assert not [f for f in check_file(path) if f.severity == "error"]  # Q/DQ accepted by TensorRT


def test_int8_export_is_verified_with_int8_bounds(fp16_export, reference, tmp_path):
    from exporters.export.precision import to_int8
    from exporters.export.tolerances import TOLERANCES
    from exporters.export.verify import ort_runner, verify

    spec, run_reference = reference
    path = to_int8(
        fp16_export[0] / "model.onnx", tmp_path / "q.onnx", spec, CalibrationOptions(images=16, batch=4)
    )
    report = verify(ort_runner(path), run_reference, spec, VerifyOptions(SCENES, 4, TOLERANCES["int8"]))
    numbers = {h.head: h.numbers for h in report.heads}
    assert set(numbers) == {"detection", "segmentation", "depth"}
    assert numbers["segmentation"]["mean_agreement"] >= 0.95, report.lines()
    assert numbers["depth"]["d_abs_rel"] is not None and numbers["detection"]["d_map"] is not None


def test_a_too_tight_bound_fails_the_reduced_precision_export(fp16_export, reference, tmp_path):
    from exporters.export.precision_stage import precision_stage
    from exporters.export.staging import fail_if

    spec, run_reference = reference
    tight = Tolerances(seg_agreement=1.0, depth_rel_error=1e-7)
    options = _options(tmp_path, "fp16", bounds=tight)
    final, report = precision_stage(fp16_export[0] / "model.onnx", tmp_path, spec, options, run_reference)
    assert not report.passed and not final.exists()
    with pytest.raises(ExportError, match=r"verification \(onnxruntime fp16 vs pytorch\) failed for "):
        fail_if([report], tmp_path, spec)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.failed.json"]
    failed = json.loads((tmp_path / "report.failed.json").read_text())["verification"][0]["heads"]
    assert not failed["depth"]["passed"] and failed["depth"]["d_abs_rel"] is not None


def test_reduced_precision_options_are_checked(tmp_path):
    with pytest.raises(SpecError, match="INT8 needs calibration data"):
        ExportOptions(network="cam-n", out_dir=tmp_path, precision="int8")
    with pytest.raises(SpecError, match="calibration options are for --engine onnx --precision int8"):
        ExportOptions(network="cam-n", out_dir=tmp_path, calibration=CalibrationOptions())
    with pytest.raises(SpecError, match="reduced-precision bounds are for"):
        ExportOptions(network="cam-n", out_dir=tmp_path, bounds=Tolerances())
    with pytest.raises(SpecError, match="calibration method must be entropy or percentile"):
        CalibrationOptions(method="minmax")


def test_cli_asks_which_engine_a_reduced_precision_is_for(tmp_path):
    import subprocess

    cli = [sys.executable, "-c", "from percept.cli import main; main()", "export", "cam-n"]
    for args, message in (
        (
            ["--precision", "int8"],
            "error: precision int8 needs --engine tensorrt (an engine) or --engine onnx",
        ),
        (["--precision", "int8", "--engine", "onnx"], "error: INT8 needs calibration data"),
    ):
        proc = subprocess.run(
            [*cli, *args, "--out", str(tmp_path)], capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 1 and proc.stderr.strip().startswith(message), proc.stderr


def test_layers_kept_in_fp32_read_fp32_and_the_rest_stays_quantized(fp16_export, tmp_path):
    import onnx

    from exporters.export.onnx_export import check_onnx, read_onnx_spec, read_provenance
    from exporters.export.precision import exclude_layers, quantizable_nodes, to_int8
    from exporters.export.verify import ort_runner, scene_inputs, validation_seeds
    from world import render_scene

    src = fp16_export[0] / "model.onnx"
    spec = read_onnx_spec(src)
    full = to_int8(src, tmp_path / "all.onnx", spec, CalibrationOptions(images=4, batch=4))
    fp32 = onnx.load(str(src))
    layers = quantizable_nodes(fp32)
    kept = layers[:2]
    path = exclude_layers(full, src, tmp_path / "kept.onnx", spec, kept)  # no recalibration
    check_onnx(path, spec)
    proto = onnx.load(str(path))
    producers = {o: n for n in proto.graph.node for o in n.output}
    convs = {n.name: n for n in proto.graph.node if n.name in layers}
    source = {n.name: n for n in fp32.graph.node}
    for name in kept:  # the FP32 activation and weights of the exported graph, no Q/DQ
        assert list(convs[name].input) == list(source[name].input), name
    for name in layers[2:]:
        assert producers[convs[name].input[0]].op_type == "DequantizeLinear", name
    read = {i for n in proto.graph.node for i in n.input}
    assert all(o in read for n in proto.graph.node for o in n.output if n.op_type.endswith("QuantizeLinear"))
    assert read_provenance(path)["fp32_kept"] == sorted(kept)
    # every layer kept: the Q/DQ are all gone and the file computes what the FP32 export does
    none = exclude_layers(full, src, tmp_path / "none.onnx", spec, layers)
    assert not [n for n in onnx.load(str(none)).graph.node if n.op_type.endswith("QuantizeLinear")]
    frame = scene_inputs(spec, render_scene(validation_seeds(1)[0], hw=spec.input_hw, lidar=False))
    batch = {k: v[None] for k, v in frame.items()}
    want, got = ort_runner(src)(batch), ort_runner(none)(batch)
    for name, value in want.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)


@pytest.mark.slow
def test_int8_missing_a_bound_keeps_sensitive_layers_in_fp32(fp16_export, reference, tmp_path):
    from exporters.export.precision_stage import FALLBACK_STEPS, precision_stage

    spec, run_reference = reference
    never = Tolerances(seg_agreement=1.0)  # unreachable: every fallback step is tried
    calibration = CalibrationOptions(images=8, batch=4)
    options = _options(tmp_path, "int8", bounds=never, calibration=calibration)
    final, report = precision_stage(fp16_export[0] / "model.onnx", tmp_path, spec, options, run_reference)
    assert not report.passed and not final.exists()
    kept = report.notes["fp32_layers"]
    assert len(kept) == FALLBACK_STEPS[-1] and all(name.startswith("net.") for name in kept)
    assert [a["fp32_layers"] for a in report.notes["attempts"]] == [0, *FALLBACK_STEPS]
    assert report.to_dict()["notes"] == report.notes
    from exporters.export.staging import ExportResult

    lines = ExportResult(tmp_path / "model.onnx", tmp_path / "report.json", [report]).lines()
    assert lines[-1].startswith(f"[{report.label}] kept in FP32 ({len(kept)} layers): net.")


def test_calibration_reader_hands_out_chunks_so_histograms_are_merged_chunk_by_chunk():
    from exporters.export.precision import _Reader, calibration_stride
    from serving.spec import ModelSpec

    reader = _Reader(ModelSpec("cam-n", input_hw=(64, 96)), CalibrationOptions(images=10, batch=2))
    assert len(reader) == 5 and calibration_stride(5) == 1
    assert (calibration_stride(8), calibration_stride(6), calibration_stride(32)) == (4, 3, 4)
    reader.set_range(0, 2)
    chunk = [reader.get_next() for _ in range(3)]
    assert [b is None for b in chunk] == [False, False, True] and chunk[0]["images"].shape == (2, 3, 64, 96)
    reader.set_range(2, 5)
    assert [reader.get_next() is None for _ in range(4)] == [False, False, False, True]
