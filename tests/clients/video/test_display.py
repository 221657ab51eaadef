"""The picture a viewer reads: one box per object, no depth colour on the sky, legends."""

import numpy as np

from clients.results import Detection, PerceptionResult
from clients.video.display import display_detections, horizon_row, no_depth_mask
from clients.video.render import BOX_COLOURS, NO_DEPTH_BGR, annotate, depth_panel
from serving.letterbox import Letterbox

CLASSES = ("car", "truck", "pedestrian")
SEG = ("background", "drivable", "lane")


def _det(box, score, cls):
    return Detection(tuple(float(v) for v in box), score, cls, CLASSES[cls])


def test_one_box_per_object_whatever_its_classes_and_no_low_scores():
    car = _det((100, 100, 200, 200), 0.9, 0)
    truck_same_object = _det((102, 98, 203, 202), 0.6, 1)
    pedestrian_elsewhere = _det((300, 100, 320, 150), 0.8, 2)
    pedestrian_weak = _det((400, 100, 420, 150), 0.3, 2)
    shown = display_detections([truck_same_object, pedestrian_weak, car, pedestrian_elsewhere])
    assert shown == [car, pedestrian_elsewhere]


def test_annotate_draws_the_best_class_only_and_keeps_the_served_detections():
    frame = np.full((384, 640, 3), 128, np.uint8)
    car, truck = _det((100, 150, 200, 250), 0.9, 0), _det((102, 148, 203, 252), 0.6, 1)
    result = PerceptionResult((car, truck), None, None, Letterbox.fit((384, 640), (384, 640)), SEG)
    out = annotate(frame, result, depth_head=False, det_classes=CLASSES)
    around = out[140:260, 90:215].reshape(-1, 3)  # the boxes, away from the legend (top right)
    colours = {tuple(int(c) for c in p) for p in around}
    assert BOX_COLOURS[0] in colours and BOX_COLOURS[1] not in colours
    legend = out[:80, 320:].reshape(-1, 3)  # the legend names every class of the model
    assert any(tuple(int(c) for c in p) == BOX_COLOURS[1] for p in legend)
    assert result.detections == (car, truck)  # display only


def test_every_box_draws_the_low_scores_the_display_leaves_out():
    """percept compare's gallery: a low-score box is what one side has and the other misses."""
    frame = np.full((384, 640, 3), 128, np.uint8)
    weak = _det((100, 150, 200, 250), 0.3, 2)
    result = PerceptionResult((weak,), None, None, Letterbox.fit((384, 640), (384, 640)), SEG)
    box = (slice(140, 260), slice(90, 215))
    for every_box, drawn in ((False, False), (True, True)):
        out = annotate(frame, result, depth_head=False, det_classes=CLASSES, every_box=every_box)
        colours = {tuple(int(c) for c in p) for p in out[box].reshape(-1, 3)}
        assert (BOX_COLOURS[2] in colours) is drawn


def _road_depth(h=96, w=160, horizon=40):
    """Ground receding to 100 m at the horizon row; the sky above it 'predicted' at 8 m, as an
    untrained head does."""
    depth = np.full((h, w), 8.0, np.float32)
    rows = np.arange(horizon, h)
    depth[horizon:] = (100.0 * (1.5 / 100.0) ** ((rows - horizon) / (h - 1 - horizon)))[:, None]
    return depth.astype(np.float16)


def test_the_horizon_is_where_the_columns_are_farthest():
    assert horizon_row(_road_depth(horizon=40)) == 40
    assert horizon_row(np.full((48, 80), 10.0, np.float16)) is None  # a flat map: no horizon
    near = _road_depth() / np.float16(10)  # its "horizon" is 10 m away: not a sky boundary
    assert horizon_row(near) is None


def test_sky_has_no_depth_colour_except_inside_a_drawn_box():
    depth = _road_depth(horizon=40)  # head at half the source resolution
    box = _det((40, 40, 80, 100), 0.9, 0)  # source pixels: rows 20..50, cols 20..40 of the map
    mask = no_depth_mask(depth, (192, 320), [box])
    assert mask is not None and mask[:40].sum() == 40 * 160 - 20 * 20 and not mask[40:].any()
    panel = depth_panel(depth, (192, 320), boxes=(box,))
    assert tuple(int(c) for c in panel[20, 200]) == NO_DEPTH_BGR  # sky
    assert tuple(int(c) for c in panel[60, 60]) != NO_DEPTH_BGR  # the object standing above the horizon
    ground = panel[100, 200].astype(int)
    assert tuple(ground) != NO_DEPTH_BGR and ground.max() - ground.min() > 60  # a colour, not grey


def test_the_depth_colour_bar_runs_from_near_red_to_far_blue():
    depth = np.full((96, 160), 10.0, np.float16)
    panel = depth_panel(depth, (192, 320))
    bar = panel[160:185, 8 : 320 * 3 // 5]  # bottom left, above the metre labels
    row = bar[np.argmax((bar.max(axis=2).astype(int) - bar.min(axis=2)).sum(axis=1))]  # the coloured row
    near, far = row[1].astype(int), row[-2].astype(int)
    assert near[2] > near[0] and far[0] > far[2]  # BGR
