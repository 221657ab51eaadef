"""Bring your own ONNX: a YOLOP-layout file generated here, a YAML head spec, `percept import-onnx`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from exporters.export.options import BatchProfile, VerifyOptions
from serving.errors import ExportError, SpecError
from serving.spec import DET_BOXES, DET_SCORES, NUM_DETS, SEG_MASK
from tests.exporters.export.import_fixtures import write_heads

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

HW = (128, 224)
CLASSES = ["car", "truck", "pedestrian"]
ANCHORS = ((10, 13, 16, 30, 33, 23), (30, 61, 62, 45, 59, 119), (116, 90, 156, 198, 373, 326))
HEADS = {
    "name": "yolop-tiny",
    "input": {
        "name": "images",
        "layout": "NCHW",
        "dtype": "float32",
        "mean": [123.675, 116.28, 103.53],
        "std": [58.395, 57.12, 57.375],
    },
    "detection": {"output": "det_out", "layout": "cxcywh", "activation": "none", "classes": CLASSES},
    "segmentation": {"drivable": "drive_area_seg", "lane": "lane_line_seg"},
    "top_k": 50,
    "score_threshold": 0.25,
    "iou_threshold": 0.45,
}


class TinyYolop(torch.nn.Module):
    """YOLOP's output layout: det_out [B, N, 5 + C] (cx, cy, w, h in input pixels, sigmoid objectness
    and class probabilities; N = 3 anchors x cells over strides 8/16/32), drive_area_seg and
    lane_line_seg [B, 2, H, W] logits; input float32 RGB normalised outside the file."""

    def __init__(self, hw=HW, classes: int = len(CLASSES)):
        super().__init__()
        self.hw, self.no = hw, 5 + classes
        self.stem = torch.nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.down = torch.nn.ModuleList(torch.nn.Conv2d(16, 16, 3, stride=s, padding=1) for s in (4, 2, 2))
        self.det = torch.nn.ModuleList(torch.nn.Conv2d(16, 3 * self.no, 1) for _ in range(3))
        self.drive = torch.nn.Conv2d(16, 2, 1)
        self.lane = torch.nn.Conv2d(16, 2, 1)
        for conv in self.det:
            conv.weight.data *= 8.0  # spread the probabilities over 0..1

    def forward(self, images):
        f = torch.relu(self.stem(images))
        dets, x = [], f
        for i, (conv, stride) in enumerate(zip(self.down, (8, 16, 32), strict=True)):
            x = torch.relu(conv(x))
            h, w = self.hw[0] // stride, self.hw[1] // stride
            p = self.det[i](x).reshape(-1, 3, self.no, h, w).permute(0, 1, 3, 4, 2).sigmoid()
            ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
            grid = torch.stack([xs, ys], -1).float().reshape(1, 1, h, w, 2)
            anchor = torch.tensor(ANCHORS[i], dtype=torch.float32).reshape(1, 3, 1, 1, 2)
            xy = (p[..., :2] * 2 - 0.5 + grid) * stride
            wh = (p[..., 2:4] * 2) ** 2 * anchor
            dets.append(torch.cat([xy, wh, p[..., 4:]], -1).reshape(-1, 3 * h * w, self.no))
        up = torch.nn.functional.interpolate(f, size=self.hw, mode="bilinear", align_corners=False)
        return torch.cat(dets, 1), self.drive(up), self.lane(up)


def write_yolop_onnx(path: Path, dynamic_batch: bool = True) -> Path:
    torch.manual_seed(0)
    model = TinyYolop().eval()
    example = (torch.randn(2 if dynamic_batch else 1, 3, *HW),)
    shapes = ({0: torch.export.Dim("batch", min=1, max=16)},) if dynamic_batch else None
    torch.onnx.export(
        model,
        example,
        str(path),
        dynamo=True,
        dynamic_shapes=shapes,
        opset_version=17,
        input_names=["images"],
        output_names=["det_out", "drive_area_seg", "lane_line_seg"],
        verbose=False,
    )
    return path


@pytest.fixture(scope="module")
def yolop(tmp_path_factory):
    folder = tmp_path_factory.mktemp("yolop")
    return write_yolop_onnx(folder / "yolop.onnx")


def _heads_file(folder: Path, **changes) -> Path:
    return write_heads(folder, HEADS, **changes)


def _options(model, heads, out, **kw):
    from exporters.export.import_onnx import ImportOptions

    return ImportOptions(model=model, heads=heads, out_dir=out, verify=VerifyOptions(scenes=4, batch=2), **kw)


@pytest.fixture(scope="module")
def imported(yolop, tmp_path_factory):
    from exporters.export.import_onnx import run_import

    out = tmp_path_factory.mktemp("imported")
    result = run_import(_options(yolop, _heads_file(out), out / "repo"))
    return result


def test_import_gives_the_spec_tensors_and_passes_verification(imported):
    from exporters.export import read_onnx_spec

    spec = read_onnx_spec(imported.onnx)
    assert spec.name == "yolop-tiny" and spec.input_hw == HW and spec.det_classes == tuple(CLASSES)
    assert spec.top_k == 50 and spec.iou_threshold == 0.45
    sess = ort.InferenceSession(str(imported.onnx), providers=["CPUExecutionProvider"])
    assert [(i.name, i.type, i.shape) for i in sess.get_inputs()] == [
        ("images", "tensor(uint8)", ["batch", 3, *HW])
    ]
    assert [o.name for o in sess.get_outputs()] == [t.name for t in spec.network_outputs]
    for o, t in zip(sess.get_outputs(), spec.network_outputs, strict=True):
        assert list(o.shape) == list(t.dims)
    assert imported.verification[0].passed
    heads = {h.head: h for h in imported.verification[0].heads}
    assert set(heads) == {"detection", "segmentation"}
    assert heads["detection"].numbers["matched"] > 0 and heads["detection"].numbers["unmatched"] == 0
    assert (
        imported.report.name == "report.json"
        and not (imported.onnx.parent / "model.onnx.unverified").exists()
    )


def test_imported_model_equals_original_plus_numpy_post_processing(imported, yolop):
    from exporters.export.import_onnx import load_head_spec, reference_runner
    from exporters.export.verify import ort_runner
    from world import render_scene

    heads = load_head_spec(imported.onnx.parent.parent / "heads.yaml")
    from exporters.export import read_onnx_spec

    spec = read_onnx_spec(imported.onnx)
    images = np.stack([render_scene(s, hw=HW, lidar=False).image.transpose(2, 0, 1) for s in (11, 12, 13)])
    got = ort_runner(imported.onnx)({"images": images})
    ref = reference_runner(yolop, heads, spec)({"images": images})
    assert (got[NUM_DETS] == ref[NUM_DETS]).all() and got[NUM_DETS].min() > 0
    for i, n in enumerate(got[NUM_DETS]):
        np.testing.assert_allclose(got[DET_SCORES][i, :n], ref[DET_SCORES][i, :n], atol=1e-5)
        np.testing.assert_allclose(got[DET_BOXES][i, :n], ref[DET_BOXES][i, :n], atol=1e-3)
        assert not got[DET_BOXES][i, n:].any()
    assert (got[SEG_MASK] == ref[SEG_MASK]).mean() > 0.999
    assert set(np.unique(got[SEG_MASK])) <= {0, 1, 2} and len(np.unique(got[SEG_MASK])) > 1
    # lane drawn over drivable: wherever the lane map says lane, the class is 2
    raw = ort_runner(yolop)
    x = (
        images.astype(np.float32) - np.array(HEADS["input"]["mean"], np.float32).reshape(1, 3, 1, 1)
    ) / np.array(HEADS["input"]["std"], np.float32).reshape(1, 3, 1, 1)
    lane = raw({"images": x})["lane_line_seg"].argmax(1)
    assert (got[SEG_MASK][lane == 1] == 2).mean() > 0.999


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"detection__output": "det_head"}, "detection output 'det_head' is not in the file"),
        ({"detection__classes": ["car"]}, "has 8 columns, expected 5 \\+ 1 classes = 6"),
        ({"input__name": "image"}, "input 'image' is not in the file"),
        ({"input__dtype": "uint8"}, "input 'images' has ONNX elem_type 1, heads say uint8"),
        ({"input__layout": "NHWC"}, "has 224 channels in NHWC, expected 3"),
        ({"segmentation__lane": None}, "needs both `drivable` and `lane`"),
        ({"detection__layout": "xywh"}, "detection.layout must be cxcywh or xyxy"),
        ({"detection__colour": "red"}, "unknown key\\(s\\) in detection: colour"),
    ],
)
def test_a_head_spec_that_does_not_fit_names_the_mismatch(yolop, tmp_path, change, message):
    from exporters.export.import_onnx import run_import

    with pytest.raises(SpecError, match=message):
        run_import(_options(yolop, _heads_file(tmp_path, **change), tmp_path / "out"))
    assert not (tmp_path / "out" / "model.onnx").exists()


def test_fixed_batch_file_refuses_a_larger_max_batch(tmp_path):
    from exporters.export.import_onnx import run_import

    fixed = write_yolop_onnx(tmp_path / "fixed.onnx", dynamic_batch=False)
    with pytest.raises(SpecError, match="fixed batch of 1; use --max-batch 1"):
        run_import(_options(fixed, _heads_file(tmp_path), tmp_path / "out", profile=BatchProfile(1, 1, 4)))


def test_corrupt_onnx_is_refused(tmp_path):
    from exporters.export.import_onnx import run_import

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file at all")
    with pytest.raises(ExportError, match="not a valid ONNX file"):
        run_import(_options(bad, _heads_file(tmp_path), tmp_path / "out"))
    assert not list((tmp_path / "out").glob("model.onnx*"))


def test_cli_import_onnx(yolop, tmp_path):
    heads = _heads_file(tmp_path)
    cmd = [sys.executable, "-c", "from percept.cli import main; main()", "import-onnx", str(yolop)]
    ok = subprocess.run(
        [*cmd, "--heads", str(heads), "--out", str(tmp_path / "a"), "--verify-scenes", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ok.returncode == 0, ok.stderr
    assert "detection     PASS" in ok.stdout and "segmentation  PASS" in ok.stdout
    assert (tmp_path / "a" / "model.onnx").is_file() and (tmp_path / "a" / "report.json").is_file()
    bad = subprocess.run(
        [*cmd, "--heads", str(_heads_file(tmp_path, detection__output="nope")), "--out", str(tmp_path / "b")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines()[-1] == (
        "error: detection output 'nope' is not in the file "
        "(outputs: ['det_out', 'drive_area_seg', 'lane_line_seg'])"
    )
    assert not (tmp_path / "b" / "model.onnx").exists()


def test_an_opset_12_file_with_symbolic_output_dims_is_converted_and_imported(tmp_path):
    """Like many YOLOP exports in the wild: TorchScript exporter, opset 12, dims left symbolic."""
    import onnx

    from exporters.export.import_onnx import run_import

    torch.manual_seed(0)
    axes = {name: {0: "batch"} for name in ("images", "det_out", "drive_area_seg", "lane_line_seg")}
    legacy = tmp_path / "yolop12.onnx"
    torch.onnx.export(
        TinyYolop().eval(),
        (torch.randn(1, 3, *HW),),
        str(legacy),
        dynamo=False,
        opset_version=12,
        input_names=["images"],
        output_names=["det_out", "drive_area_seg", "lane_line_seg"],
        dynamic_axes=axes,
    )
    det_dims = onnx.load(str(legacy)).graph.output[0].type.tensor_type.shape.dim
    assert not det_dims[2].HasField("dim_value")  # the exporter left the column count symbolic
    result = run_import(_options(legacy, _heads_file(tmp_path), tmp_path / "out"))
    assert result.verification[0].passed
    proto = onnx.load(str(result.onnx))
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == 17


def test_the_import_records_its_batch_profile_for_the_repository_builder(imported):
    from serving.onnx_meta import read_provenance

    assert read_provenance(imported.onnx)["batch_profile"] == {"min": 1, "opt": 1, "max": 8}
