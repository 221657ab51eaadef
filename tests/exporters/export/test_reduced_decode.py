"""The accuracy cost of decoding a large JPEG at a reduced DCT scale (the decode step's rule) instead
of in full: metrics of the real cam-n at its default 384x640 on world scenes rendered at 2x and 3x
that size, sent as JPEG (quality 95), against ground truth, both ways. A loss is bounded by the
tolerance table's ``jpeg_dct`` row (exporters.export.tolerances); a gain is not a failure (measured,
40 scenes: mAP@0.5 0.637 -> 0.640 at 2x, 0.620 -> 0.639 at 3x, where libjpeg's DCT scaling averages
what a 3x bilinear shrink skips; mIoU and depth AbsRel equal within 0.0005). About 40 s."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from serving import spec as S
from serving.ensemble import FrameLimits
from serving.letterbox import Letterbox
from serving.processing import decode_encoded, decode_factor, postprocess, preprocess

SCENES = 24
INPUT_HW = (384, 640)  # the default: at the tests' 192x320 cam-n's mAP@0.5 is ~0.09, all noise


@pytest.fixture(scope="module")
def cam_n_384x640(tmp_path_factory):
    pytest.importorskip("torch")
    from exporters.export.freshness import export_if_stale
    from exporters.export.options import OnnxOptions
    from exporters.weights import shipped_checkpoint

    path = tmp_path_factory.mktemp("cam-n-384x640") / "model.onnx"
    options = OnnxOptions(checkpoint=shipped_checkpoint("cam-n"))
    return export_if_stale("cam-n", path, options, input_hw=INPUT_HW, seed=0)


def _served_way(spec, session, jpeg: bytes, reduced: bool, source_hw) -> dict:
    """What the pipeline answers, resized to the source for scoring (as a client asking for it)."""
    frame = decode_encoded(jpeg, FrameLimits(), spec.input_hw if reduced else None)
    pre = preprocess(spec, [frame])
    names = [t.name for t in spec.network_outputs]
    raw = dict(zip(names, session.run(names, {S.IMAGES: pre[S.IMAGES]}), strict=True))
    out = {
        k: v[0] for k, v in postprocess(spec, raw, pre[S.LETTERBOX], source_hw=np.array([source_hw])).items()
    }
    lb = Letterbox.from_tensor(out[S.LETTERBOX])
    return {**out, S.SEG_MASK: lb.to_source_size(out[S.SEG_MASK]), S.DEPTH: lb.to_source_size(out[S.DEPTH])}


@pytest.mark.parametrize("times", [2, 3])
def test_a_jpeg_decoded_at_the_reduced_scale_loses_no_more_than_the_bounds(cam_n_384x640, times):
    ort = pytest.importorskip("onnxruntime")
    from exporters.evaluation import evaluate
    from exporters.export.tolerances import TOLERANCES
    from serving.onnx_meta import read_spec
    from world import render_scene

    spec = read_spec(cam_n_384x640)
    session = ort.InferenceSession(str(cam_n_384x640))
    hw = (spec.input_hw[0] * times, spec.input_hw[1] * times)
    assert decode_factor(hw, spec.input_hw) == 2  # 2x: exactly half; 3x: half, then resized
    world = [render_scene(500 + i, hw=hw) for i in range(SCENES)]
    full, reduced = [], []
    for scene in world:
        ok, jpeg = cv2.imencode(
            ".jpg", cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95]
        )
        assert ok
        full.append(_served_way(spec, session, jpeg.tobytes(), False, hw))
        reduced.append(_served_way(spec, session, jpeg.tobytes(), True, hw))
    a, b = evaluate(full, world, spec), evaluate(reduced, world, spec)
    bounds = TOLERANCES["jpeg_dct"]
    losses = {  # positive: the reduced decode scores worse
        "map50": (a["map50"] - b["map50"], bounds.d_map50),
        "miou": (a["miou"] - b["miou"], bounds.d_miou),
        "abs_rel": (b["abs_rel"] - a["abs_rel"], bounds.d_abs_rel),
    }
    assert all(loss <= bound for loss, bound in losses.values()), losses
