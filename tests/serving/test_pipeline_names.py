"""Every network gets its own ensemble for the heads it has; how the ensembles are named."""

from __future__ import annotations

import pytest

from serving import spec as S
from serving.errors import ServingError
from serving.model_config import RepositoryOptions, parse_config, pipeline_names
from serving.repository import NetworkArtifact, write_configs
from serving.spec import ModelSpec

CAM = ModelSpec(name="cam-n", input_hw=(128, 224))
CAM_S = ModelSpec(name="cam-s", input_hw=(128, 224))
FUSION = ModelSpec(name="fusion-n", input_hw=(128, 224), fusion=True)
SEG = ModelSpec(name="seg360", input_hw=(360, 640), tasks=("segmentation",))
DET_SEG = ModelSpec(name="detseg", input_hw=(72, 120), tasks=("detection", "segmentation"))


def test_first_full_networks_keep_the_demo_names_the_others_are_named_after_themselves():
    names = pipeline_names([SEG, CAM, CAM_S, FUSION, DET_SEG])
    assert names == {
        "seg360": "seg360_pipeline",
        "cam_n": S.ENSEMBLE_CAMERA,
        "cam_s": "cam_s_pipeline",
        "fusion_n": S.ENSEMBLE_FUSION,
        "detseg": "detseg_pipeline",
    }


def test_a_given_name_wins_and_a_clash_is_refused():
    assert pipeline_names([CAM, SEG], (("seg360", "roads"), ("cam-n", "front")))["seg360"] == "roads"
    assert pipeline_names([CAM, CAM_S], (("cam_n", "front"),))["cam_s"] == S.ENSEMBLE_CAMERA
    with pytest.raises(ServingError, match="two models would be named perception"):
        pipeline_names([CAM, SEG], (("seg360", S.ENSEMBLE_CAMERA),))
    with pytest.raises(ServingError, match="named cam_n_frame"):
        pipeline_names([CAM], (("cam_n", "cam_n_frame"),))
    with pytest.raises(ServingError, match="no network 'nope'"):
        pipeline_names([CAM], (("nope", "x"),))
    with pytest.raises(ServingError, match="bad model name"):
        RepositoryOptions(pipeline_names=(("cam_n", "a b"),))


def test_each_network_gets_a_frame_model_and_an_ensemble_with_outputs_for_its_heads_only(tmp_path):
    written = write_configs([NetworkArtifact(s) for s in (CAM, SEG, DET_SEG)], tmp_path, RepositoryOptions())
    assert {"seg360_pipeline", "seg360_frame", "seg360_decode", "detseg_pipeline", S.ENSEMBLE_CAMERA} <= set(
        written
    )
    seg = parse_config((tmp_path / "seg360_pipeline" / "config.pbtxt").read_text())
    assert [o.name for o in seg.output] == [S.SEG_MASK, S.LETTERBOX]
    assert [s.model_name for s in seg.ensemble_scheduling.step] == ["seg360_decode", "seg360_frame"]
    frame = parse_config((tmp_path / "seg360_frame" / "config.pbtxt").read_text())
    assert [o.name for o in frame.output] == [S.SEG_MASK, S.LETTERBOX]
    det_seg = parse_config((tmp_path / "detseg_pipeline" / "config.pbtxt").read_text())
    assert S.DEPTH not in {o.name for o in det_seg.output}
    assert {S.NUM_DETS, S.DET_CLASSES, S.SEG_MASK} <= {o.name for o in det_seg.output}
    net = parse_config((tmp_path / "seg360" / "config.pbtxt").read_text())
    assert list(net.input[0].dims) == [3, 360, 640]
