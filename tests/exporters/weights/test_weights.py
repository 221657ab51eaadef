"""The shipped checkpoints, re-evaluated on a slice of the validation split, clear the bars.

The bars (issue 3) hold on the full 200-scene split; a 24-scene slice is noisier, so each bar gets
a margin here. The metadata JSON must hold what the README reports.
"""

import json

import pytest

from exporters.evaluation.run import evaluate_model
from exporters.weights import SHIPPED, WEIGHTS_DIR, checkpoint_metadata, default_checkpoint
from serving.errors import SpecError

SLICE = 24
# metric, bar on the full split, margin allowed on the slice; "max" bars are upper bounds
BARS = {
    "map50": (0.60, 0.05, "min"),
    "iou_drivable": (0.90, 0.02, "min"),
    "iou_lane": (0.50, 0.05, "min"),
}
CAM_ABS_REL = (0.12, 0.015)
# fusion-n AbsRel <= 0.6 x cam-n AbsRel (fusion must earn its input); on the 200-scene split the
# shipped pair reaches 0.0236 / 0.0612 = 0.39, so the bar itself holds on the slice too
FUSION_RATIO = 0.6


@pytest.fixture(scope="module")
def slice_metrics() -> dict[str, dict[str, float]]:
    return {name: evaluate_model(name, num_scenes=SLICE, threads=2, progress=False)[1] for name in SHIPPED}


def test_shipped_checkpoints_are_small_and_described():
    for name in SHIPPED:
        path = default_checkpoint(name)
        assert path.stat().st_size < 8e6, f"{path} is {path.stat().st_size / 1e6:.1f} MB"
        meta = checkpoint_metadata(name)
        assert meta["network"] == name
        assert meta["input_hw"] == [384, 640]
        assert meta["det_classes"] == ["car", "truck", "pedestrian"]
        for key in ("seed", "steps", "wall_minutes", "validation"):
            assert key in meta, f"{name}.json lacks {key}"
        assert meta["validation"]["scenes"] == 200
    assert json.loads((WEIGHTS_DIR / "cam-n.json").read_text()) == checkpoint_metadata("cam-n")


def test_unknown_network_has_no_checkpoint():
    with pytest.raises(SpecError, match="no shipped checkpoint"):
        default_checkpoint("cam-m")


@pytest.mark.parametrize("name", SHIPPED)
def test_checkpoint_clears_the_bars_on_a_validation_slice(name, slice_metrics):
    m = slice_metrics[name]
    for key, (bar, margin, _) in BARS.items():
        assert m[key] >= bar - margin, f"{name} {key} = {m[key]:.3f} on {SLICE} scenes (bar {bar})"


def test_depth_bars_on_a_validation_slice(slice_metrics):
    cam, fusion = slice_metrics["cam-n"]["abs_rel"], slice_metrics["fusion-n"]["abs_rel"]
    bar, margin = CAM_ABS_REL
    assert cam <= bar + margin, f"cam-n AbsRel {cam:.3f} on {SLICE} scenes (bar {bar})"
    assert fusion <= FUSION_RATIO * cam, f"fusion-n AbsRel {fusion:.3f} vs cam-n {cam:.3f}"


def test_torch_and_onnx_backends_score_alike(tmp_path):
    from exporters.evaluation import validation_seeds
    from exporters.evaluation.backends import onnx_predictor, torch_predictor
    from exporters.evaluation.run import evaluate_predictor
    from exporters.export.onnx_export import export_onnx
    from exporters.export.options import BatchProfile, OnnxOptions
    from exporters.networks import load_checkpoint

    model, _ = load_checkpoint(default_checkpoint("cam-n"))
    path = export_onnx(model, tmp_path / "cam-n.onnx", OnnxOptions(profile=BatchProfile(1, 2, 4)))
    seeds = validation_seeds(8)
    eager = evaluate_predictor(torch_predictor(model), model.spec, seeds=seeds, progress=False)
    predict, spec = onnx_predictor(path)
    assert spec == model.spec
    onnx = evaluate_predictor(predict, spec, seeds=seeds, progress=False)
    assert eager["map50"] > 0.5  # a trained model finds objects: the comparison is not vacuous
    assert onnx["map50"] == pytest.approx(eager["map50"], abs=0.005)
    assert onnx["miou"] == pytest.approx(eager["miou"], abs=0.005)
    assert onnx["abs_rel"] == pytest.approx(eager["abs_rel"], abs=0.001)


def test_shipped_checkpoint_or_none():
    from exporters.weights import shipped_checkpoint

    for name in SHIPPED:
        assert shipped_checkpoint(name) == default_checkpoint(name)
    assert shipped_checkpoint("cam-m") is None  # a random init then, no error
