"""Head layouts users bring (YOLOv5, YOLOv8, HybridNets anchors, sigmoid maps, metric and relative depth):
each generated fixture imports, passes verification and equals the numpy reference."""

from __future__ import annotations

import numpy as np
import pytest

from exporters.export.options import VerifyOptions
from serving.errors import SpecError
from serving.spec import DEPTH, DET_BOXES, DET_CLASSES, DET_SCORES, NUM_DETS, SEG_MASK
from tests.exporters.export.import_fixtures import write_heads, write_layout

ort = pytest.importorskip("onnxruntime")

LAYOUTS = {
    "yolov5": {"detection"},
    "yolov8": {"detection"},
    "hybridnets-npy": {"detection", "segmentation"},
    "hybridnets-output": {"detection", "segmentation"},
    "sigmoid-map": {"segmentation"},
    "two-map": {"segmentation"},  # TwinLiteNet-style, at 360x640
    "depth-relative": {"depth"},
    "depth-metric": {"depth"},
}


def _options(model, heads, out):
    from exporters.export.import_onnx import ImportOptions

    return ImportOptions(model=model, heads=heads, out_dir=out, verify=VerifyOptions(scenes=2, batch=2))


@pytest.fixture(scope="module", params=sorted(LAYOUTS))
def imported(request, tmp_path_factory):
    from exporters.export.import_onnx import run_import

    folder = tmp_path_factory.mktemp(request.param)
    model, heads = write_layout(request.param, folder)
    result = run_import(_options(model, write_heads(folder, heads), folder / "repo"))
    return request.param, model, folder / "heads.yaml", result


def _images(hw, seeds=(11, 12, 13)) -> np.ndarray:
    from world import render_scene

    return np.stack([render_scene(s, hw=hw, lidar=False).image.transpose(2, 0, 1) for s in seeds])


def test_each_layout_imports_passes_verification_and_equals_the_numpy_reference(imported):
    from exporters.export import read_onnx_spec
    from exporters.export.import_onnx import load_head_spec, reference_runner
    from exporters.export.verify import ort_runner

    layout, model, heads_file, result = imported
    report = result.verification[0]
    assert report.passed and {h.head for h in report.heads} == LAYOUTS[layout]
    spec = read_onnx_spec(result.onnx)
    sess = ort.InferenceSession(str(result.onnx), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == [t.name for t in spec.network_outputs]
    images = _images(spec.input_hw)
    got = ort_runner(result.onnx)({"images": images})
    ref = reference_runner(model, load_head_spec(heads_file), spec)({"images": images})
    if "detection" in LAYOUTS[layout]:
        assert (got[NUM_DETS] == ref[NUM_DETS]).all() and got[NUM_DETS].min() > 0
        for i, n in enumerate(got[NUM_DETS]):
            np.testing.assert_allclose(got[DET_SCORES][i, :n], ref[DET_SCORES][i, :n], atol=1e-5)
            np.testing.assert_allclose(got[DET_BOXES][i, :n], ref[DET_BOXES][i, :n], atol=1e-3)
            assert (got[DET_CLASSES][i, :n] == ref[DET_CLASSES][i, :n]).all()
    if "segmentation" in LAYOUTS[layout]:
        assert (got[SEG_MASK] == ref[SEG_MASK]).mean() > 0.999
        assert len(np.unique(got[SEG_MASK])) == len(spec.seg_classes)  # every class occurs
    if "depth" in LAYOUTS[layout]:
        assert got[DEPTH].dtype == np.float16 and got[DEPTH].shape == (3, *spec.depth_hw)
        np.testing.assert_allclose(got[DEPTH].astype(np.float32), ref[DEPTH].astype(np.float32), rtol=2e-3)


def test_relative_depth_is_served_as_metres_from_the_scale_and_shift(tmp_path):
    from exporters.export.import_onnx import import_onnx, load_head_spec
    from exporters.export.options import BatchProfile
    from exporters.export.verify import ort_runner

    model, heads = write_layout("depth-relative", tmp_path)
    out = tmp_path / "m.onnx"
    import_onnx(model, load_head_spec(write_heads(tmp_path, heads)), out, BatchProfile(1, 1, 2))
    images = _images((224, 224), seeds=(5,))
    disparity = ort_runner(model)({"images": images.astype(np.float32) / 255})["predicted_depth"]
    metres = 1.0 / np.maximum(0.5 * disparity + 0.02, 1 / 120.0)  # scale 0.5, shift 0.02
    got = ort_runner(out)({"images": images})[DEPTH].astype(np.float32)
    np.testing.assert_allclose(got, metres, rtol=1e-3)
    assert got.min() > 0 and got.max() <= 120.0


def test_yolov8_channel_first_columns_are_read_as_cx_cy_w_h_then_class_scores():
    from exporters.export.head_spec import DetectionSpec
    from exporters.export.import_reference import boxes_scores_numpy

    # [B=1, 4 + C=2, N=2]: candidate 0 at (10, 20) 4x6, scores 0.9 / 0.1; candidate 1 elsewhere
    out0 = np.array([[[10, 50], [20, 60], [4, 8], [6, 8], [0.9, 0.3], [0.1, 0.7]]], np.float32)
    d = DetectionSpec(output="output0", classes=("a", "b"), format="yolov8")
    boxes, scores = boxes_scores_numpy({"output0": out0}, d, (64, 96))
    np.testing.assert_allclose(boxes[0, 0], [8, 17, 12, 23])
    np.testing.assert_allclose(scores[0], [[0.9, 0.3], [0.1, 0.7]])  # [C, N], no objectness


def test_anchor_deltas_decode_as_efficientdet_bbox_transform():
    from exporters.export.import_reference import decode_anchor_deltas

    anchors = np.array([[10, 20, 30, 60]], np.float32)  # y1, x1, y2, x2: centre (20, 40), h 20, w 40
    deltas = np.array([[[0.5, -0.25, np.log(2), 0.0]]], np.float32)  # dy, dx, dh, dw
    # y_c = 0.5 * 20 + 20 = 30, x_c = -0.25 * 40 + 40 = 30, h = 2 * 20 = 40, w = 40
    np.testing.assert_allclose(
        decode_anchor_deltas(deltas, anchors, (64, 96))[0, 0], [10, 10, 50, 50], rtol=1e-6
    )
    # ClipBoxes: to the image
    far = np.array([[[0.0, 0.0, np.log(8), np.log(8)]]], np.float32)
    np.testing.assert_allclose(decode_anchor_deltas(far, anchors, (64, 96))[0, 0], [0, 0, 96, 64])


@pytest.mark.parametrize(
    ("layout", "change", "message"),
    [
        (
            "yolov5",
            {"detection__format": "yolov8"},
            "'output0' has 96 channels, expected 4 \\+ 3 classes = 7",
        ),
        ("yolov8", {"detection__classes": ["car"]}, "'output0' has 7 channels, expected 4 \\+ 1 classes = 5"),
        (
            "yolov8",
            {"detection__format": "yolo"},
            "'output0' has 96 columns, expected 5 \\+ 3 classes = 8",
        ),
        ("hybridnets-npy", {"detection__anchors": None}, "format anchors needs `scores` .* and `anchors`"),
        (
            "hybridnets-npy",
            {"detection__anchors": "missing.npy"},
            "detection.anchors file .*missing.npy does not",
        ),
        (
            "hybridnets-output",
            {"detection__anchors": "anchor"},
            "detection anchors output 'anchor' is not in",
        ),
        (
            "hybridnets-npy",
            {"detection__classes": ["car"]},
            "'classification' has shape .*, expected \\[B, 288, 1\\]",
        ),
        (
            "hybridnets-npy",
            {"detection__output": "classification"},
            "'classification' has shape .* \\[B, N, 4\\]",
        ),
        ("hybridnets-npy", {"segmentation__classes": ["a", "b"]}, "'segmentation' has shape \\['batch', 3,"),
        (
            "sigmoid-map",
            {"segmentation__activation": "softmax"},
            "'seg' has shape \\['batch', 2, 64, 96\\], exp",
        ),
        (
            "sigmoid-map",
            {"segmentation__activation": "tanh"},
            "segmentation.activation must be softmax or sig",
        ),
        (
            "depth-relative",
            {"depth__shift": None},
            "'predicted_depth' is relative inverse depth .*scale and shift",
        ),
        ("depth-relative", {"depth__kind": "disparity"}, "depth.kind must be metric or relative"),
        ("depth-metric", {"depth__output": "depth"}, "depth output 'depth' is not in the file"),
        (
            "depth-metric",
            {"input__stride": None},
            "'images' has dynamic height/width .*input.size and input.stride",
        ),
        (
            "depth-metric",
            {"input__size": [230, 224]},
            "'images': size 230x224 is not a multiple of input.stride 14",
        ),
    ],
)
def test_a_bad_head_spec_for_each_layout_names_the_tensor(tmp_path, layout, change, message):
    from exporters.export.import_onnx import run_import

    model, heads = write_layout(layout, tmp_path)
    with pytest.raises(SpecError, match=message) as err:
        run_import(_options(model, write_heads(tmp_path, heads, **change), tmp_path / "out"))
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out" / "model.onnx").exists()


def test_a_fixed_size_file_serves_its_own_size_without_a_stride(tmp_path):
    from exporters.export.import_onnx import import_onnx, load_head_spec
    from exporters.export.options import BatchProfile
    from tests.exporters.export.import_fixtures import HEADS, depth_onnx

    model = depth_onnx(tmp_path / "fixed.onnx", dynamic_hw=False)
    heads = dict(HEADS["depth-metric"], input={"name": "images"})
    spec = import_onnx(
        model, load_head_spec(write_heads(tmp_path, heads)), tmp_path / "m.onnx", BatchProfile(1, 1, 2)
    )
    assert spec.input_hw == (224, 224) and spec.depth_stride == 1
