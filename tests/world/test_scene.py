import numpy as np
import pytest

from serving.errors import PerceptionError, SpecError
from serving.lidar import project_to_depth_image
from world import MIN_BOX_PX, render_scene, render_sequence
from world.layout import sample_layout

HW = (384, 640)


@pytest.fixture(scope="module")
def scenes():
    return [render_scene(seed, HW) for seed in range(6)]


def test_same_seed_gives_identical_bytes_and_other_seeds_differ():
    a, b, c = render_scene(7, HW), render_scene(7, HW), render_scene(8, HW)
    assert a.image.tobytes() == b.image.tobytes()
    assert a.depth.tobytes() == b.depth.tobytes() and a.seg.tobytes() == b.seg.tobytes()
    assert a.points.tobytes() == b.points.tobytes() and a.boxes.tobytes() == b.boxes.tobytes()
    assert a.image.tobytes() != c.image.tobytes()


def test_scene_fields_have_the_contract_types(scenes):
    for s in scenes:
        assert s.image.shape == (*HW, 3) and s.image.dtype == np.uint8
        assert s.seg.shape == HW and s.seg.dtype == np.uint8 and set(np.unique(s.seg)) <= {0, 1, 2}
        assert s.depth.shape == HW and s.depth.dtype == np.float32 and (s.depth >= 0).all()
        assert s.boxes.dtype == np.float32 and s.boxes.shape == (len(s.classes), 4)
        assert s.classes.dtype == np.int32 and set(s.classes.tolist()) <= {0, 1, 2}
        assert s.points.dtype == np.float32 and s.points.shape[1] == 4 and len(s.points) > 10000
        assert s.projection.shape == (3, 4) and s.projection.dtype == np.float32
    assert sum(len(s.boxes) for s in scenes) >= 10
    # the sky is undefined depth, the road is drivable with lane markings on it
    for s in scenes:
        assert (
            (s.depth[: HW[0] // 4] == 0).mean() > 0.2
            and (s.seg == 1).mean() > 0.05
            and (s.seg == 2).sum() > 100
        )


def test_boxes_are_inside_and_tight_around_the_visible_pixels_of_their_object(scenes):
    for s in scenes:
        h, w = HW
        for box, inst in zip(s.boxes, s.instance_ids, strict=True):
            x1, y1, x2, y2 = box.astype(int)
            assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
            assert x2 - x1 >= MIN_BOX_PX and y2 - y1 >= MIN_BOX_PX
            ys, xs = np.nonzero(s.instance == inst)
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x1, y1, x2, y2)
            # every edge row/column of the box holds object pixels, and objects are not road in seg
            inside = s.instance[y1:y2, x1:x2] == inst
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
            assert (s.seg[s.instance == inst] == 0).all() and (s.depth[s.instance == inst] > 0).all()


def test_objects_occlude_each_other_and_small_boxes_are_common():
    small = total = occluded = 0
    for seed in range(40):
        s = render_scene(seed, HW, lidar=False)
        area = (s.boxes[:, 2] - s.boxes[:, 0]) * (s.boxes[:, 3] - s.boxes[:, 1])
        small += int((area < 32 * 32).sum())
        total += len(area)
        # an occluded object: its box holds pixels of another object, nearer than its own
        for box, inst, frac in zip(s.boxes.astype(int), s.instance_ids, s.visible_fraction, strict=True):
            patch = s.instance[box[1] : box[3], box[0] : box[2]]
            depth = s.depth[box[1] : box[3], box[0] : box[2]]
            other = (patch != inst) & (patch > 0)
            hidden = other.any() and depth[other].min() < depth[patch == inst].max()
            occluded += int(hidden and frac < 0.95)
            assert 0.25 <= frac <= 1.0
    assert total > 100 and small / total >= 0.25 and occluded >= 5


def test_flat_road_depth_matches_camera_geometry():
    seed = 3
    s = render_scene(seed, HW, lidar=False, flat=True)
    rig = sample_layout(seed, 0.0, flat=True).rig
    f = rig.focal_scale * HW[1]
    rows = np.arange(HW[0]) + 0.5
    yn = (rows - HW[0] / 2) / f
    expected = rig.height / (yn * np.cos(rig.pitch) + np.sin(rig.pitch))  # ray meets z = 0
    ground = (s.seg > 0) & (s.instance == 0)
    r, c = np.nonzero(ground)
    assert len(r) > 10000
    np.testing.assert_allclose(s.depth[r, c], expected[r], rtol=1e-4)


def test_projected_lidar_points_agree_with_rendered_depth(scenes):
    for s in scenes:
        lidar = project_to_depth_image(s.points, s.projection, HW)[0]
        both = (lidar > 0) & (s.depth > 0)
        assert both.sum() > 2000
        rel = np.abs(lidar[both] - s.depth[both]) / s.depth[both]
        assert np.median(rel) < 0.02 and np.mean(rel < 0.05) > 0.95


def test_sequence_moves_consistently_over_time():
    frames = list(render_sequence(11, 4, fps=10.0, hw=(192, 320), lidar=False))
    assert [f.timestamp for f in frames] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert frames[0].image.tobytes() != frames[3].image.tobytes()
    again = next(iter(render_sequence(11, 4, fps=10.0, hw=(192, 320), lidar=False)))
    assert again.image.tobytes() == frames[0].image.tobytes()
    # ego-motion: the near road surface keeps its distance, the scene content changes smoothly
    diff = np.abs(frames[1].image.astype(int) - frames[0].image.astype(int)).mean()
    assert 0 < diff < 40


def test_objects_keep_their_identity_and_move_smoothly_between_frames():
    frames = list(render_sequence(4, 6, fps=10.0, hw=HW, lidar=False))
    tracked = 0
    for a, b in zip(frames, frames[1:], strict=False):
        centres_a = {int(i): box for i, box in zip(a.instance_ids, a.boxes, strict=True)}
        for i, box in zip(b.instance_ids, b.boxes, strict=True):
            if int(i) in centres_a:
                prev = centres_a[int(i)]
                shift = np.abs((box[:2] + box[2:]) / 2 - (prev[:2] + prev[2:]) / 2)
                size = max(prev[2] - prev[0], prev[3] - prev[1])
                assert shift.max() < 0.5 * size + 20, (i, prev, box)
                tracked += 1
    assert tracked >= 10


def test_bad_arguments_raise_spec_errors():
    with pytest.raises(SpecError, match="too small"):
        render_scene(0, (8, 8))
    with pytest.raises(SpecError, match="num_frames"):
        render_sequence(0, 0)
    with pytest.raises(SpecError, match="seed"):
        render_scene(-1)


def test_drive_writes_a_video_with_every_frame_and_a_matching_kitti_folder(tmp_path):
    import cv2

    from world.drive import DriveOptions, record_drive
    from world.kitti import read_kitti_sequence

    options = DriveOptions(seconds=1.2, fps=5.0, hw=(96, 160), seed=2)
    seen = []
    count = record_drive(options, tmp_path / "d.mp4", tmp_path / "k", on_frame=lambda s: seen.append(s))
    assert count == options.num_frames == 6 == len(seen)
    cap = cv2.VideoCapture(str(tmp_path / "d.mp4"))
    frames = 0
    while cap.read()[0]:
        frames += 1
    cap.release()
    assert frames == 6
    back = list(read_kitti_sequence(tmp_path / "k"))
    assert [f.image.tobytes() for f in back] == [s.image.tobytes() for s in seen]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.mp4", "k"]  # no temporary left
    with pytest.raises(PerceptionError, match="exists"):
        record_drive(options, tmp_path / "d.mp4")


def test_stats_measure_speed_and_box_sizes():
    from world.stats import measure

    stats = measure(seeds=8, hw=(192, 320))
    assert stats.scenes_per_s > 0 and stats.scenes_per_s_lidar > 0 and stats.boxes > 0
    assert 0 < stats.small_box_share <= 1 and abs(sum(stats.class_share.values()) - 1) < 1e-6
    assert stats.points_per_scene > 10000
