"""The annotated MP4's segments joined by copying their coded samples (clients.video.mp4concat),
through SegmentedVideoWriter.finish on files OpenCV wrote: the frames OpenCV decodes from the
joined file are the segments' own, bit for bit; segments that differ fall back to re-encoding; a
damaged segment is an error naming it. About 2 s."""

from __future__ import annotations

import json
import logging
import shutil
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from clients.video.isobmff import read_segment
from clients.video.mp4 import SegmentedVideoWriter
from serving.errors import PerceptionError

FPS = 15.0


def _frame(i: int, hw: tuple[int, int], noise: bool = False) -> np.ndarray:
    h, w = hw
    if noise:  # hard to compress: the muxer cuts a segment's samples into several chunks
        return np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8)
    img = np.zeros((h, w, 3), np.uint8)
    img[:, :, 1] = np.linspace(0, 255, w)[None].astype(np.uint8)
    img[:, :, 2] = (i * 37) % 256
    cv2.circle(img, ((i * 9) % w, h // 2), h // 5, (255, 255, 255), -1)
    return img


def _write(video: SegmentedVideoWriter, start: int, n: int, hw=(64, 96), noise=False) -> None:
    video.begin(start)
    for i in range(start, start + n):
        video.write(i, _frame(i, hw, noise))
    video.commit()


def _decode(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def _keep_segments(video: SegmentedVideoWriter, dst: Path) -> list[Path]:
    dst.mkdir()
    return [Path(shutil.copy2(p, dst / p.name)) for _, _, p in video.committed()]


def _samples(path: Path) -> bytes:
    """The coded samples of the file's video track, in order."""
    seg = read_segment(path)
    data = path.read_bytes()
    return b"".join(data[int(o) : int(o) + int(n)] for o, n in zip(seg.offsets, seg.chunk_sizes, strict=True))


@pytest.mark.parametrize(
    ("lengths", "hw", "noise"), [((7, 7, 3), (64, 96), False), ((20, 20, 5), (384, 640), True)]
)
def test_join_copies_the_segments_samples(tmp_path, lengths, hw, noise):
    video = SegmentedVideoWriter(tmp_path / "annotated.mp4", FPS, segment_frames=lengths[0])
    video.start_fresh()
    video.begin(0)
    for i in range(sum(lengths)):
        video.write(i, _frame(i, hw, noise))
    video.commit()
    parts = _keep_segments(video, tmp_path / "kept")
    assert [read_segment(p).samples for p in parts] == list(lengths)
    if noise:
        assert all(len(read_segment(p).offsets) > 1 for p in parts[:2])  # several chunks each

    joined = video.finish()

    assert joined == tmp_path / "annotated.mp4" and not video.dir.exists()
    frames = _decode(joined)
    expected = [f for p in parts for f in _decode(p)]
    assert len(frames) == len(expected) == sum(lengths)
    assert all(np.array_equal(a, b) for a, b in zip(frames, expected, strict=True))
    cap = cv2.VideoCapture(str(joined))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(FPS)
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == sum(lengths)
    cap.release()
    # no generation lost: the joined file's samples are the segments' bytes, and one index less
    assert _samples(joined) == b"".join(_samples(p) for p in parts)
    assert joined.stat().st_size < sum(p.stat().st_size for p in parts)
    seg, kept = read_segment(joined), [read_segment(p) for p in parts]
    assert len(seg.offsets) == sum(len(k.offsets) for k in kept)
    starts = np.cumsum([0] + [k.samples for k in kept])
    sync = [np.arange(1, k.samples + 1) if k.sync is None else k.sync for k in kept]
    expected_sync = np.concatenate([s + b for s, b in zip(sync, starts, strict=False)])
    assert np.array_equal(seg.sync if seg.sync is not None else np.arange(1, seg.samples + 1), expected_sync)
    assert seg.duration == sum(k.duration for k in kept)


def test_segments_of_another_size_are_re_encoded(tmp_path, caplog):
    """A resume that writes another frame size: the join falls back, logs why, loses no frame."""
    final = tmp_path / "annotated.mp4"
    first = SegmentedVideoWriter(final, FPS, segment_frames=100)
    first.start_fresh()
    _write(first, 0, 7, hw=(64, 96))
    resumed = SegmentedVideoWriter(final, FPS, segment_frames=100)
    assert resumed.recover() == 7
    _write(resumed, 7, 5, hw=(80, 128))
    with caplog.at_level(logging.WARNING, logger="clients.video.mp4"):
        resumed.finish()
    assert "re-encoding" in caplog.text and "128x80 and 96x64" in caplog.text
    frames = _decode(final)
    assert len(frames) == 12 and {f.shape for f in frames} == {(64, 96, 3)}


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_damaged_segment_is_an_error_naming_it(tmp_path, damage):
    video = SegmentedVideoWriter(tmp_path / "annotated.mp4", FPS, segment_frames=7)
    video.start_fresh()
    _write(video, 0, 17)
    middle = video.committed()[1][2]
    data = middle.read_bytes()
    middle.write_bytes(data[: len(data) // 2] if damage == "truncated" else bytes(len(data)))
    with pytest.raises(PerceptionError, match=rf"{middle.name}.*(truncated|not an MP4)"):
        video.finish()
    assert not (tmp_path / "annotated.mp4").exists() and not (tmp_path / "annotated.tmp.mp4").exists()
    assert len(video.committed()) == 3  # nothing deleted: the segments are still there to look at


def test_64_bit_mdat_and_moov_first_are_read(tmp_path):
    """The other layouts the box reader takes: a 64-bit mdat size (FFmpeg's free + mdat made one
    16-byte header, as it does past 4 GiB) and the index before the samples."""
    video = SegmentedVideoWriter(tmp_path / "annotated.mp4", FPS, segment_frames=7)
    video.start_fresh()
    _write(video, 0, 14)
    kept = _keep_segments(video, tmp_path / "kept")
    expected = [f for p in kept for f in _decode(p)]
    a, b = (p for _, _, p in video.committed())
    data = a.read_bytes()
    free = data.index(b"free") - 4
    assert data[free + 12 : free + 16] == b"mdat"
    size = struct.unpack_from(">I", data, free + 8)[0]
    a.write_bytes(data[:free] + struct.pack(">I4sQ", 1, b"mdat", size + 8) + data[free + 16 :])
    _move_moov_first(b)
    video.finish()
    frames = _decode(tmp_path / "annotated.mp4")
    assert len(frames) == 14 and all(np.array_equal(x, y) for x, y in zip(frames, expected, strict=True))


def _move_moov_first(path: Path) -> None:
    """Rewrite an OpenCV file as ftyp, moov, mdat (a 'fast start' file), with chunk offsets moved."""
    from clients.video.isobmff import chunk_offsets

    seg = read_segment(path)
    data = path.read_bytes()
    mdat = data.index(b"mdat") - 4
    mdat_end = mdat + struct.unpack_from(">I", data, mdat)[0]
    moov_len = len(seg.moov.encode())
    seg.stbl().children = [
        chunk_offsets(seg.offsets + moov_len - mdat + len(seg.ftyp)) if c.type == b"stco" else c
        for c in seg.stbl().children or []
    ]
    path.write_bytes(seg.ftyp + seg.moov.encode() + data[mdat:mdat_end])


def test_past_4_gib_offsets_and_durations_take_64_bits(tmp_path):
    """What a file past 4 GiB (or a track past 2^32 ticks) needs, written and read back: co64 chunk
    offsets, a 64-bit box size, version-1 durations."""
    from clients.video.isobmff import box_header, chunk_offsets, duration, set_duration, table, timescale

    offsets = np.array([44, 5 << 30, (5 << 30) + 123], np.int64)
    box = chunk_offsets(offsets)
    assert box.type == b"co64" and np.array_equal(table(box, 1, "t", dtype=">u8"), offsets)
    assert chunk_offsets(offsets[:1]).type == b"stco"
    assert box_header(b"mdat", 5 << 30) == struct.pack(">I4sQ", 1, b"mdat", (5 << 30) + 16)
    video = SegmentedVideoWriter(tmp_path / "annotated.mp4", FPS, segment_frames=7)
    video.start_fresh()
    _write(video, 0, 3)
    seg = read_segment(video.committed()[0][2])
    mdhd = seg.trak().get(b"mdia", "t").get(b"mdhd", "t")
    tkhd = seg.trak().get(b"tkhd", "t")
    ts, before = timescale(mdhd), tkhd.body[12:16]  # tkhd's track_ID
    for box in (mdhd, tkhd):
        assert box.body[0] == 0
        set_duration(box, 1 << 33)
        assert box.body[0] == 1 and duration(box) == 1 << 33
    assert timescale(mdhd) == ts and tkhd.body[20:24] == before


def test_samples_are_copied_by_the_kernel_or_in_user_space(tmp_path):
    """copy_file_range between files; refused (here: a destination with no file descriptor), read
    and written; a source that ends early is an error either way."""
    import io

    from clients.video.mp4concat import _copy_range

    src = tmp_path / "src"
    src.write_bytes(bytes(range(256)) * 40)
    dst = io.BytesIO(b"head")
    with open(src, "rb") as f:
        _copy_range(f, dst, 1000, 5000, "src")
        with pytest.raises(PerceptionError, match="ended while"):
            _copy_range(f, dst, 10000, 500, "src")
    assert dst.getvalue()[:4] == b"head" and dst.getvalue()[4:5004] == src.read_bytes()[1000:6000]
    with open(src, "rb") as f, open(tmp_path / "dst", "wb") as real:  # the kernel's copy
        real.write(b"head")
        _copy_range(f, real, 1000, 5000, "src")
        with pytest.raises(PerceptionError, match="ended while"):
            _copy_range(f, real, 10000, 500, "src")
    assert (tmp_path / "dst").read_bytes()[:5004] == dst.getvalue()[:5004]


def test_a_run_whose_segment_is_damaged_fails_that_input_with_one_message(tmp_path, tiny_onnx):
    """A resumed run (local backend) whose committed segment was damaged meanwhile: the input
    fails, summary.json and the report say which segment, the segments stay for a look."""
    from clients.video import EXIT_FAILED, VideoOptions, run_video
    from clients.video.options import RESULTS, SUMMARY
    from tests.clients.conftest import write_video

    video = write_video(tmp_path / "drive.mp4", 12)
    options = VideoOptions(out_dir=tmp_path / "out", backend="local", onnx=tiny_onnx, progress=False)
    options_7 = VideoOptions(**{**options.__dict__, "segment_frames": 7})
    assert run_video([str(video)], options_7).exit_code == 0
    out = tmp_path / "out" / "drive"
    lines = (out / RESULTS).read_bytes().splitlines(keepends=True)
    (out / RESULTS).unlink()
    for name in (SUMMARY, "annotated.mp4"):
        (out / name).unlink()
    (out / (RESULTS + ".partial")).write_bytes(b"".join(lines[:7]))  # as if stopped after frame 6
    segment = out / "annotated.segments" / "00000000-00000007.mp4"
    segment.parent.mkdir()
    write_video(segment, 7)
    segment.write_bytes(segment.read_bytes()[:-300])  # its index cut off
    report = run_video([str(video)], VideoOptions(**{**options_7.__dict__, "resume": True}))
    result = report.results[0]
    assert report.exit_code == EXIT_FAILED and result.status == "failed"
    assert segment.name in result.message and "truncated" in result.message
    summary = json.loads((out / SUMMARY).read_text())
    assert summary["status"] == "failed" and segment.name in summary["message"]
    assert not (out / "annotated.mp4").exists() and segment.exists()
