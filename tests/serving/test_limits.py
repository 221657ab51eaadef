"""FrameLimits: configurable, written into the configs and read back, each limit with its own message."""

from __future__ import annotations

import numpy as np
import pytest

from serving import spec as S
from serving.ensemble import FrameLimits
from serving.errors import SpecError
from serving.letterbox import Letterbox
from serving.model_config import RepositoryOptions, decode_config, frame_config
from serving.processing import check_network_inputs, check_request
from serving.spec import ModelSpec


def test_limits_round_trip_through_the_decode_and_frame_configs():
    limits = FrameLimits(max_pixels=1000, min_side=4, max_points=7, max_request_bytes=99)
    spec = ModelSpec(name="fusion-n", input_hw=(128, 224), fusion=True)
    for cfg in (
        decode_config(spec, RepositoryOptions(limits=limits)),
        frame_config(spec, RepositoryOptions(limits=limits)),
    ):
        params = {k: v.string_value for k, v in cfg.parameters.items()}
        assert FrameLimits.from_parameters(params) == limits
    # a repository written before a limit existed keeps that limit's default
    assert FrameLimits.from_parameters({"max_pixels": "1000"}) == FrameLimits(max_pixels=1000)


def test_a_limit_below_one_is_refused():
    with pytest.raises(SpecError, match="max_points must be >= 1"):
        FrameLimits(max_points=0)


def test_request_bytes_and_points_are_checked_before_decoding():
    limits = FrameLimits(max_points=10, max_request_bytes=1000)
    check_request({S.IMAGE_ENCODED: np.zeros((1, 900), np.uint8), S.POINTS: None}, limits)
    with pytest.raises(SpecError, match=r"request of 1001 bytes exceeds the limit of 1000 bytes"):
        check_request({S.IMAGE_ENCODED: np.zeros((1, 1001), np.uint8)}, limits)
    with pytest.raises(SpecError, match=r"holds 11 LiDAR points, above the limit of 10 \(max_points\)"):
        check_request({S.POINTS: np.zeros((1, 11, 4), np.float32)}, limits)


@pytest.mark.parametrize(
    "row", [[0, 0, 0, 0, 0, 1], [np.nan] * 6, [0.5, -1, 0, 10, 10, 1], [0.5, 0, 0, 0, 10, 1], [np.inf] * 6]
)
def test_a_letterbox_row_no_letterbox_has_is_refused(row):
    with pytest.raises(SpecError, match="not a letterbox row"):
        Letterbox.from_tensor(np.array(row, np.float32))


def test_letterbox_content_outside_the_map_is_refused():
    lb = Letterbox(1.0, 500, 0, 10, 10)
    with pytest.raises(SpecError, match=r"lies outside the \(20, 20\) map"):
        lb.crop_dense(np.zeros((20, 20), np.uint8))


def test_raw_network_float_inputs_must_be_finite():
    check_network_inputs({S.IMAGES: np.zeros((1, 3, 4, 4), np.uint8), S.LIDAR_DEPTH: np.zeros((1, 1, 4, 4))})
    bad = np.zeros((1, 1, 4, 4), np.float32)
    bad[0, 0, 1, 1] = np.inf
    with pytest.raises(SpecError, match="lidar_depth holds NaN or Inf"):
        check_network_inputs({S.LIDAR_DEPTH: bad})
