"""`percept import-onnx --images`: a trained network (the session's cam-n, cut back to its raw head
tensors) imported through right and deliberately wrong head specs, previewed on world scenes written
as image files. The right spec is silent; each wrong one warns and names the key that is wrong."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from exporters.export.options import BatchProfile, VerifyOptions
from tests.exporters.export.import_fixtures import write_heads
from tests.exporters.export.preview_fixtures import camn_raw, world_images

pytest.importorskip("torch", reason="the raw cam-n is cut from the session's real export")
pytest.importorskip("onnxruntime")

# validation scenes (exporters.evaluation.split) in which the shipped cam-n finds traffic
SEEDS = (1000002, 1000004, 1000006, 1000007)


@pytest.fixture(scope="module")
def raw(exported_onnx, tmp_path_factory):
    folder = tmp_path_factory.mktemp("camn-raw")
    model, heads = camn_raw(exported_onnx["cam-n"], folder / "camn_raw.onnx")
    return model, heads, world_images(folder / "images", SEEDS)


def _wrong(heads: dict, change: str) -> dict:
    h = copy.deepcopy(heads)
    if change == "twin-maps-read-as-one-sigmoid-map":  # issue 25: the README's old sigmoid example
        h["segmentation"] = {
            "map": "drivable",
            "classes": ["background", "drivable", "lane"],
            "activation": "sigmoid",
        }
    elif change == "classes-shifted":
        h["segmentation"]["classes"] = ["drivable", "lane", "background"]
    elif change == "boxes-read-as-xyxy":
        h["detection"]["layout"] = "xyxy"
    elif change == "probabilities-through-sigmoid":
        h["detection"]["activation"] = "sigmoid"
    elif change == "depth-millimetres":
        h["depth"]["scale"] = 0.001
    elif change == "depth-kilometres":
        h["depth"]["scale"] = 1000.0
    return h


def _preview(raw, heads: dict, folder: Path):
    from exporters.export.head_spec import load_head_spec
    from exporters.export.import_onnx import PreviewOptions, import_onnx
    from exporters.export.import_preview import run_preview

    model, _, images = raw
    folder.mkdir(parents=True, exist_ok=True)
    hs = load_head_spec(write_heads(folder, heads))
    spec = import_onnx(model, hs, folder / "model.onnx", BatchProfile(1, 1, 8))
    return run_preview(folder / "model.onnx", spec, hs, PreviewOptions(images), folder)


def test_the_right_head_spec_previews_plausible_heads_and_is_silent(raw, tmp_path):
    preview = _preview(raw, raw[1], tmp_path)
    assert preview.findings == []
    seg, det, depth = (preview.summary[h] for h in ("segmentation", "detection", "depth"))
    assert list(seg) == ["background", "drivable", "lane"]
    assert seg["background"]["median"] > 0.5 and 0.05 < seg["drivable"]["median"] < 0.5
    assert seg["lane"]["max"] < 0.05
    assert len(det["per_image"]) == len(SEEDS) and min(det["per_image"]) >= 1 and det["inverted"] == 0
    assert det["area_fraction"]["max"] < 0.3
    assert 3.0 < depth["median"] < 10.0 and depth["min"] > 0.1
    written = json.loads((tmp_path / "preview.json").read_text())
    assert set(written["images"]) == {f"scene{s}.png" for s in SEEDS} and written["warnings"] == []
    for stats in written["images"].values():
        assert sum(stats["segmentation"]["fractions"].values()) == pytest.approx(1.0, abs=1e-3)
    assert "No plausibility warning." in (tmp_path / "preview.md").read_text()


@pytest.mark.parametrize(
    ("change", "head", "key"),
    [
        ("twin-maps-read-as-one-sigmoid-map", "segmentation", "segmentation.activation"),
        ("classes-shifted", "segmentation", "segmentation.classes"),
        ("boxes-read-as-xyxy", "detection", "detection.layout"),
        ("probabilities-through-sigmoid", "detection", "detection.activation"),
        ("depth-millimetres", "depth", "depth.scale"),
        ("depth-kilometres", "depth", "depth.scale"),
    ],
)
def test_a_wrong_head_spec_warns_on_its_head_and_names_the_key(raw, tmp_path, change, head, key):
    preview = _preview(raw, _wrong(raw[1], change), tmp_path)
    assert preview.findings, change
    assert {f.head for f in preview.findings} == {head}  # the other heads stay silent
    assert any(key in f.keys for f in preview.findings)
    md = (tmp_path / "preview.md").read_text()
    assert "## Warnings" in md and f"`{key}`" in md
    assert any(key in w["keys"] for w in json.loads((tmp_path / "preview.json").read_text())["warnings"])


def test_issue_25_the_twin_maps_as_one_sigmoid_map_show_what_the_user_saw(raw, tmp_path):
    """Sky drawn as drivable, road as lane: class 0 almost nowhere, 'drivable' most of the frame."""
    preview = _preview(raw, _wrong(raw[1], "twin-maps-read-as-one-sigmoid-map"), tmp_path)
    seg = preview.summary["segmentation"]
    assert seg["background"]["max"] < 0.05 and seg["drivable"]["median"] > 0.6
    assert any("background channel" in f.message for f in preview.findings)


def _cli(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", "from percept.cli import main; main()", "import-onnx", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_cli_strict_preview_fails_the_import_and_leaves_the_preview_and_report_failed(raw, tmp_path):
    model, heads, images = raw
    wrong = write_heads(tmp_path, _wrong(heads, "twin-maps-read-as-one-sigmoid-map"))
    out = tmp_path / "out"
    args = [str(model), "--heads", str(wrong), "--out", str(out), "--verify-scenes", "1"]
    done = _cli(*args, "--images", str(images), "--strict")
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --strict: ") and "segmentation.activation" in last
    assert not (out / "model.onnx").exists() and not (out / "report.json").exists()
    failed = json.loads((out / "report.failed.json").read_text())
    assert failed["passed"] is False and failed["preview"]["warnings"]
    # the annotated images are there to look at: the source size, with the overlay drawn
    import cv2

    drawn = cv2.imread(str(out / "preview" / f"scene{SEEDS[0]}.jpg"))
    source = cv2.imread(str(images / f"scene{SEEDS[0]}.png"))
    assert drawn.shape == (240, 800, 3)  # frame | depth panel
    assert abs(drawn[:, :400].astype(int) - source.astype(int)).mean() > 5


def test_in_process_import_with_images_passes_and_reports_the_preview(raw, tmp_path):
    from clients.video.preview import draw_network_outputs
    from exporters.export.import_onnx import ImportOptions, PreviewOptions, run_import

    model, heads, images = raw
    options = ImportOptions(
        model=model,
        heads=write_heads(tmp_path, heads),
        out_dir=tmp_path / "out",
        verify=VerifyOptions(scenes=1, batch=1),
        preview=PreviewOptions(images, strict=True),
    )
    result = run_import(options, draw=draw_network_outputs)
    assert result.report.is_file() and result.preview is not None and not result.preview.findings
    lines = result.lines()
    assert any(line.startswith("[preview] segmentation  median image: background") for line in lines)
    assert sorted(p.name for p in (tmp_path / "out" / "preview").iterdir()) == [
        f"scene{s}.jpg" for s in SEEDS
    ]


def test_a_failed_import_leaves_report_failed_json_not_an_empty_folder(raw, tmp_path):
    from exporters.export.import_onnx import ImportOptions, run_import
    from serving.errors import SpecError

    model, heads, _ = raw
    bad = write_heads(tmp_path, {**heads, "segmentation": {"map": "segmentation_logits"}})
    out = tmp_path / "out"
    with pytest.raises(SpecError, match="segmentation output 'segmentation_logits' is not in the file"):
        run_import(ImportOptions(model=model, heads=bad, out_dir=out))
    assert sorted(p.name for p in out.iterdir()) == ["report.failed.json"]
    failed = json.loads((out / "report.failed.json").read_text())
    assert failed == {
        "network": "camn-raw",
        "passed": False,
        "stage": "write",
        "error_type": "SpecError",
        "error": failed["error"],
    }
    assert "segmentation_logits" in failed["error"]
