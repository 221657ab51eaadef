"""Metric code against hand-computed cases."""

import numpy as np
import pytest

from exporters.evaluation import (
    DepthAccumulator,
    SegmentationAccumulator,
    average_precision,
    box_iou,
    evaluate,
    is_validation_seed,
    training_seed,
    validation_seeds,
)
from serving.errors import SpecError
from serving.spec import DEPTH, DET_BOXES, DET_CLASSES, DET_SCORES, NUM_DETS, SEG_MASK, ModelSpec

SPEC = ModelSpec("cam-n", input_hw=(32, 64))


def _gt(boxes, classes, seg=None, depth=None):
    h, w = SPEC.input_hw
    if seg is None:
        seg = np.zeros((h, w), np.uint8)
        seg[16:, :] = 1
        seg[16:, 30:34] = 2
    if depth is None:
        # constant over each 2x2 block, so a perfect half-resolution prediction exists
        rows = np.repeat(np.linspace(5, 60, h // 2, dtype=np.float32), 2)
        depth = np.repeat(rows[:, None], w, axis=1)
        depth[:8] = 0.0  # sky: undefined
    return {
        "boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
        "classes": np.asarray(classes, np.int32),
        "seg": seg,
        "depth": depth,
    }


def _pred(boxes, scores, classes, seg, depth, top_k=10):
    n = len(scores)
    b = np.zeros((top_k, 4), np.float32)
    s = np.zeros(top_k, np.float32)
    c = np.zeros(top_k, np.int32)
    b[:n], s[:n], c[:n] = np.reshape(boxes, (-1, 4)), scores, classes
    return {
        NUM_DETS: np.array([n], np.int32),
        DET_BOXES: b,
        DET_SCORES: s,
        DET_CLASSES: c,
        SEG_MASK: seg.astype(np.uint8),
        DEPTH: depth[::2, ::2].astype(np.float16),  # the network's depth is at 1/2 resolution
    }


GT_BOXES = [[2, 2, 12, 12], [20, 4, 40, 20], [44, 10, 60, 30]]
GT_CLASSES = [0, 1, 2]


def test_box_iou_of_known_overlaps():
    iou = box_iou(np.array([[0, 0, 10, 10]]), np.array([[5, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30]]))
    np.testing.assert_allclose(iou, [[1 / 3, 1.0, 0.0]])


def test_perfect_prediction_scores_one_and_zero_error():
    gt = _gt(GT_BOXES, GT_CLASSES)
    pred = _pred(GT_BOXES, [0.9, 0.8, 0.7], GT_CLASSES, gt["seg"], gt["depth"])
    m = evaluate([pred], [gt], SPEC)
    assert m["map50"] == pytest.approx(1.0) and m["map50_95"] == pytest.approx(1.0)
    for name in SPEC.det_classes:
        assert m[f"ap50_{name}"] == pytest.approx(1.0)
    assert m["miou"] == pytest.approx(1.0) and m["iou_lane"] == pytest.approx(1.0)
    assert m["abs_rel"] == pytest.approx(0.0, abs=1e-3)  # float16 rounding of the depth output only
    assert m["rmse"] == pytest.approx(0.0, abs=0.05) and m["delta1"] == pytest.approx(1.0)


def test_shifted_box_gives_known_iou_and_ap():
    # a 10x10 box shifted by 2 px: intersection 80, union 120 -> IoU 2/3; matches at thresholds
    # 0.50..0.65 (4 of 10), misses at 0.70..0.95
    gt = _gt([[0, 0, 10, 10]], [0])
    shifted = [[2, 0, 12, 10]]
    assert box_iou(np.array(shifted), gt["boxes"])[0, 0] == pytest.approx(2 / 3)
    m = evaluate([_pred(shifted, [0.9], [0], gt["seg"], gt["depth"])], [gt], SPEC)
    assert m["ap50_car"] == pytest.approx(1.0)
    assert m["ap50_95_car"] == pytest.approx(0.4)
    assert np.isnan(m["ap50_truck"])  # no truck ground truth: no AP, left out of the mean
    assert m["map50"] == pytest.approx(1.0) and m["map50_95"] == pytest.approx(0.4)


def test_empty_prediction_scores_zero():
    gt = _gt(GT_BOXES, GT_CLASSES)
    seg = np.zeros_like(gt["seg"])
    pred = _pred(np.zeros((0, 4)), [], [], seg, gt["depth"])
    m = evaluate([pred], [gt], SPEC)
    assert m["map50"] == 0.0 and m["map50_95"] == 0.0
    assert m["iou_drivable"] == 0.0 and m["iou_lane"] == 0.0


def test_wrong_class_is_a_miss():
    gt = _gt([[0, 0, 10, 10]], [0])
    m = evaluate([_pred([[0, 0, 10, 10]], [0.9], [1], gt["seg"], gt["depth"])], [gt], SPEC)
    assert m["ap50_car"] == 0.0


def test_ap_hand_cases():
    # one of two objects found: recall tops out at 0.5 -> 51 of 101 recall points at precision 1
    assert average_precision(np.array([1]), np.array([0.9]), num_gt=2) == pytest.approx(51 / 101)
    # a false positive ranked above the true positive: precision 0.5 at every recall point
    assert average_precision(np.array([0, 1]), np.array([0.9, 0.8]), num_gt=1) == pytest.approx(0.5)
    # ranked below: precision 1 up to recall 1
    assert average_precision(np.array([1, 0]), np.array([0.9, 0.8]), num_gt=1) == pytest.approx(1.0)


def test_greedy_matching_lets_one_box_match_once():
    # two identical predictions on one object: the higher-scored is a TP, the other a FP
    gt = _gt([[0, 0, 10, 10]], [0])
    pred = _pred([[0, 0, 10, 10], [0, 0, 10, 10]], [0.9, 0.8], [0, 0], gt["seg"], gt["depth"])
    m = evaluate([pred], [gt], SPEC)
    assert m["ap50_car"] == pytest.approx(1.0)  # the duplicate ranks after the only recall step
    gt2 = _gt([[0, 0, 10, 10], [30, 0, 40, 10]], [0, 0])
    pred2 = _pred(
        [[0, 0, 10, 10], [0, 0, 10, 10], [30, 0, 40, 10]], [0.9, 0.8, 0.7], [0] * 3, gt["seg"], gt["depth"]
    )
    # TP, FP, TP: precision 1 at recall 0.5, 2/3 at recall 1 -> (51 * 1 + 50 * 2/3) / 101
    assert evaluate([pred2], [gt2], SPEC)["ap50_car"] == pytest.approx((51 + 50 * 2 / 3) / 101)


def test_segmentation_iou_accumulates_over_the_split():
    acc = SegmentationAccumulator(3)
    gt = np.array([[0, 1], [1, 2]])
    acc.add(np.array([[0, 1], [2, 2]]), gt)  # one drivable pixel called lane
    acc.add(gt, gt)
    # drivable: TP 3, FN 1 -> 3/4; lane: TP 2, FP 1 -> 2/3; background 2/2
    np.testing.assert_allclose(acc.iou(), [1.0, 0.75, 2 / 3])


def test_depth_errors_of_a_known_scale_error():
    gt = np.array([[10.0, 10.0, 20.0, 20.0], [10.0, 10.0, 20.0, 20.0]], np.float32)
    gt_with_sky = np.concatenate([np.zeros((2, 4), np.float32), gt])
    acc = DepthAccumulator()
    acc.add(np.array([[0.0, 0.0], [20.0, 40.0]], np.float32), gt_with_sky)  # half res, twice too far
    r = acc.result()
    assert r["abs_rel"] == pytest.approx(1.0)
    assert r["rmse"] == pytest.approx(np.sqrt((10**2 + 20**2) / 2))
    assert r["delta1"] == 0.0


def test_missing_output_is_named():
    gt = _gt(GT_BOXES, GT_CLASSES)
    pred = _pred(GT_BOXES, [0.9, 0.8, 0.7], GT_CLASSES, gt["seg"], gt["depth"])
    del pred[SEG_MASK]
    with pytest.raises(SpecError, match="seg_mask"):
        evaluate([pred], [gt], SPEC)


def test_validation_split_is_fixed_and_disjoint_from_training():
    seeds = validation_seeds(200)
    assert len(set(seeds)) == 200 and seeds == validation_seeds(200)
    assert all(is_validation_seed(s) for s in seeds)
    assert not any(is_validation_seed(training_seed(i)) for i in range(0, 5_000_000, 997))
    with pytest.raises(SpecError):
        validation_seeds(0)
