import numpy as np
import pytest

from serving.errors import PerceptionError
from world import render_sequence
from world.kitti import KittiCalib, KittiError, KittiSequence, read_kitti_sequence, write_kitti_sequence


@pytest.fixture(scope="module")
def frames():
    return list(render_sequence(5, 3, fps=10.0, hw=(96, 160)))


@pytest.fixture()
def folder(tmp_path, frames):
    write_kitti_sequence(tmp_path / "seq", frames)
    return tmp_path / "seq"


def test_round_trip_gives_identical_images_points_and_projection(folder, frames):
    assert sorted(p.name for p in folder.iterdir()) == ["calib.txt", "image_2", "times.txt", "velodyne"]
    back = list(read_kitti_sequence(folder))
    assert len(back) == len(frames)
    for k, (a, b) in enumerate(zip(frames, back, strict=True)):
        assert b.index == k
        assert b.image.tobytes() == a.image.tobytes()
        assert b.points.tobytes() == a.points.tobytes()
        assert b.projection.dtype == np.float32 and b.projection.tobytes() == a.projection.tobytes()
        assert b.timestamp == pytest.approx(a.timestamp, abs=1e-6)
    assert (folder / "velodyne" / "000002.bin").stat().st_size == 16 * len(frames[2].points)


def test_calib_file_has_kitti_lines():
    calib = KittiCalib(np.arange(12.0).reshape(3, 4), np.eye(3), np.ones((3, 4)))
    names = [line.split(":")[0] for line in calib.to_text().splitlines()]
    assert names == ["P2", "R0_rect", "Tr_velo_to_cam"]
    # an odometry-style file (Tr, no R0_rect) reads the same
    odo = KittiCalib.parse(
        "P0: "
        + " ".join(["1"] * 12)
        + "\nP2: "
        + " ".join(map(str, range(12)))
        + "\nTr: "
        + " ".join(["1"] * 12)
    )
    assert odo.projection.tobytes() == calib.projection.tobytes()


def test_projection_without_calib_is_decomposed_into_kitti_matrices(frames):
    calib = KittiCalib.from_projection(frames[0].projection)
    assert calib.p2[:, 3].tolist() == [0, 0, 0] and calib.p2[2, 2] == pytest.approx(1.0)
    np.testing.assert_allclose(calib.projection, frames[0].projection, rtol=1e-5, atol=1e-4)


def test_missing_parts_are_named(folder):
    (folder / "velodyne" / "000001.bin").unlink()
    with pytest.raises(KittiError, match="000001"):
        KittiSequence(folder)
    (folder / "calib.txt").unlink()
    with pytest.raises(KittiError, match="calib.txt"):
        read_kitti_sequence(folder)
    with pytest.raises(PerceptionError, match="image_2"):
        KittiSequence(folder / "velodyne")


def test_corrupt_files_raise_clear_errors(folder):
    with open(folder / "velodyne" / "000001.bin", "ab") as f:
        f.write(b"\0\0\0")
    (folder / "image_2" / "000002.png").write_bytes(b"not a png")
    seq = KittiSequence(folder)
    seq.read(0)
    with pytest.raises(KittiError, match="whole number"):
        seq.read(1)
    with pytest.raises(KittiError, match="000002.png"):
        seq.read(2)
    (folder / "times.txt").write_text("0.0\n")
    with pytest.raises(KittiError, match="1 timestamps for 3 frames"):
        KittiSequence(folder)
    (folder / "calib.txt").write_text("P2: 1 2 3\n")
    with pytest.raises(KittiError, match="P2 needs 12"):
        KittiSequence(folder)


def test_writer_refuses_to_overwrite_and_leaves_no_partial_folder(tmp_path, frames):
    target = tmp_path / "seq"
    target.mkdir()
    (target / "keep").write_text("x")
    with pytest.raises(KittiError, match="not empty"):
        write_kitti_sequence(target, frames)
    bad = [frames[0], type(frames[1])(**{**frames[1].__dict__, "points": None})]
    with pytest.raises(KittiError, match="points present"):
        write_kitti_sequence(tmp_path / "other", bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seq"]


def _fmt(m) -> str:
    return " ".join(f"{v:.12e}" for v in np.asarray(m).reshape(-1))


def test_kitti_raw_drive_layout_reads_the_same(tmp_path, frames):
    import cv2

    date = tmp_path / "2011_09_26"
    drive = date / "2011_09_26_drive_0001_sync"
    (drive / "image_02" / "data").mkdir(parents=True)
    (drive / "velodyne_points" / "data").mkdir(parents=True)
    for k, f in enumerate(frames):
        cv2.imwrite(
            str(drive / "image_02" / "data" / f"{k:010d}.png"), cv2.cvtColor(f.image, cv2.COLOR_RGB2BGR)
        )
        f.points.tofile(drive / "velodyne_points" / "data" / f"{k:010d}.bin")
    (drive / "image_02" / "timestamps.txt").write_text(
        "2011-09-26 23:59:59.950000000\n2011-09-27 00:00:00.050000000\n2011-09-27 00:00:00.150000000\n"
    )
    calib = frames[0].calib
    (date / "calib_cam_to_cam.txt").write_text(
        f"calib_time: 09-Jan-2012 13:57:47\nR_rect_00: {_fmt(calib.r0_rect)}\nP_rect_02: {_fmt(calib.p2)}\n"
    )
    tr = calib.tr_velo_to_cam
    (date / "calib_velo_to_cam.txt").write_text(f"calib_time: x\nR: {_fmt(tr[:, :3])}\nT: {_fmt(tr[:, 3])}\n")
    seq = KittiSequence(drive)
    assert len(seq) == 3 and seq.has_lidar
    assert seq.timestamps == pytest.approx([0.0, 0.1, 0.2])
    np.testing.assert_allclose(seq.projection, frames[0].projection, rtol=1e-6, atol=1e-5)
    back = list(seq.frames())
    assert back[2].image.tobytes() == frames[2].image.tobytes()
    assert back[1].points.tobytes() == frames[1].points.tobytes()
    (date / "calib_velo_to_cam.txt").unlink()
    with pytest.raises(KittiError, match="calib_velo_to_cam"):
        KittiSequence(drive)
