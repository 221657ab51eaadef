"""The annotated frame: the segmentation blend, the depth colours and the panel layout."""

import numpy as np

from clients.results import Detection, PerceptionResult
from clients.video.render import SEG_ALPHA, SEG_COLOURS, annotate, depth_panel, overlay_segmentation
from serving.letterbox import Letterbox


def test_overlay_blends_each_class_with_its_colour_and_weight():
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, (72, 128, 3), dtype=np.uint8)
    seg = rng.integers(0, 3, (72, 128), dtype=np.uint8)
    out = overlay_segmentation(bgr, seg)
    assert out.dtype == np.uint8 and out.shape == bgr.shape
    background = seg == 0
    np.testing.assert_array_equal(out[background], bgr[background])
    for cls, colour in SEG_COLOURS.items():
        a = SEG_ALPHA[cls]
        expected = (1 - a) * bgr[seg == cls].astype(np.float32) + a * np.array(colour, np.float32)
        assert np.abs(out[seg == cls].astype(np.float32) - expected).max() <= 1.0


def test_depth_panel_colours_near_red_and_far_blue_at_any_resolution():
    depth = np.full((18, 32), 60.0, np.float16)
    depth[:, :16] = 2.0  # left half near
    lidar = np.zeros((36, 64), np.float32)
    lidar[5, 60] = 2.0  # one near return in the far half
    panel = depth_panel(depth, (36, 64), lidar)
    assert panel.shape == (36, 64, 3)
    near, far = panel[10, 5].astype(int), panel[10, 50].astype(int)
    assert near[2] > near[0] and far[0] > far[2]  # BGR: red near, blue far
    dot = panel[5, 60].astype(int)
    assert dot[2] > dot[0]  # the return is drawn in the near colour over the far background
    assert panel.shape == depth_panel(depth, (36, 64)).shape  # and no LiDAR is fine


def test_annotate_puts_the_depth_panel_beside_the_frame_and_draws_boxes():
    frame = np.full((90, 160, 3), 128, np.uint8)
    lb = Letterbox.fit((90, 160), (96, 160))
    seg = np.zeros((90, 160), np.uint8)
    depth = np.full((45, 80), 10.0, np.float16)
    det = Detection((20.0, 20.0, 60.0, 70.0), 0.9, 0, "car")
    result = PerceptionResult((det,), seg, depth, lb, ("background", "drivable", "lane"))
    out = annotate(frame, result)
    assert out.shape == (90, 320, 3)
    assert (out[45, 20] != 128).any()  # the box's left edge is drawn
    assert (out[80, 100] == 128).all()  # away from the box and the labels the frame is untouched
    empty = annotate(frame, None, error="decode failed")
    assert empty.shape == (90, 320, 3)


def test_dense_maps_at_source_size():
    # annotate colours depth at the head's resolution; users still get both maps at source size
    lb = Letterbox.fit((90, 160), (96, 160))
    seg = np.zeros((45, 80), np.uint8)
    seg[:, 40:] = 2
    depth = np.full((45, 80), 10.0, np.float16)
    result = PerceptionResult((), seg, depth, lb, ("background", "drivable", "lane"))
    seg_src, depth_src = result.seg_at_source(), result.depth_at_source()
    assert seg_src.shape == depth_src.shape == (90, 160)
    assert seg_src.dtype == np.uint8 and depth_src.dtype == np.float16
    assert set(np.unique(seg_src)) == {0, 2} and (seg_src[:, 80:] == 2).all()
    np.testing.assert_allclose(depth_src.astype(np.float32), 10.0)


def test_overlay_on_the_rows_with_classes_is_the_whole_frame_blend():
    import cv2

    from clients.video import render

    rng = np.random.default_rng(1)
    bgr = rng.integers(0, 256, (96, 160, 3), dtype=np.uint8)
    for seg in (np.zeros((96, 160), np.uint8), rng.integers(0, 3, (96, 160), dtype=np.uint8)):
        seg[:30] = 0  # classes only in the lower rows, as on a road
        whole = cv2.blendLinear(
            bgr,
            cv2.LUT(cv2.merge([seg, seg, seg]), render._SEG_COLOUR),
            cv2.LUT(seg, render._FRAME_ALPHA),
            cv2.LUT(seg, render._SEG_ALPHA),
        )
        np.testing.assert_array_equal(overlay_segmentation(bgr, seg), whole)


def test_class_counts_are_bincounts():
    from clients.results import class_counts

    rng = np.random.default_rng(2)
    for hi, minlength in ((1, 3), (3, 3), (3, 1), (200, 5), (256, 2)):
        seg = rng.integers(0, hi, (37, 53), dtype=np.uint8)
        counts = class_counts(seg, minlength)
        expected = np.bincount(seg.reshape(-1), minlength=minlength)
        assert counts.dtype == expected.dtype and counts.tolist() == expected.tolist()


def test_float16_depth_colours_by_table_are_the_computed_colours():
    from clients.video import render

    rng = np.random.default_rng(3)
    depth = rng.uniform(0.2, 120.0, (45, 80)).astype(np.float16)
    depth[0, :4] = (0.0, 1.0, 80.0, np.inf)  # the clip's edges
    np.testing.assert_array_equal(render._FP16_LEVEL[depth.view(np.uint16)], render._depth_level(depth))
    np.testing.assert_array_equal(render._colour_depth(depth), render._colour_depth(depth.astype(np.float32)))
