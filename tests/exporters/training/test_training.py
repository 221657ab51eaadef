"""The trainer: target assignment, augmentation consistency, the loss falls, resume is exact."""

from pathlib import Path

import numpy as np
import pytest
import torch

from exporters.training import TrainOptions, train
from exporters.training.assign import assign
from exporters.training.data import ScenePool, build_pool, sample_batch
from exporters.training.losses import giou_loss
from serving.errors import SpecError

TINY_HW = (64, 96)


@pytest.fixture(scope="module")
def tiny_pool() -> ScenePool:
    return build_pool(4, TINY_HW, lidar=True, seed_base=7, cache_dir=None, progress=False)


def _grid(hw):
    from exporters.networks.detection import anchor_points

    return anchor_points(hw)


def test_assignment_gives_every_box_points_inside_it():
    points, strides = _grid((384, 640))
    boxes = torch.tensor(
        [[100.0, 100.0, 104.0, 105.0], [200.0, 150.0, 240.0, 190.0], [300.0, 50.0, 600.0, 350.0]]
    )
    idx = assign(points, strides, boxes)
    for j, box in enumerate(boxes):
        mine = idx == j
        assert mine.sum() >= 1, f"box {j} got no positive"
        p = points[mine]
        if j > 0:  # a 4x5 box is smaller than one stride: its nearest point may sit just outside
            assert ((p[:, 0] > box[0]) & (p[:, 0] < box[2]) & (p[:, 1] > box[1]) & (p[:, 1] < box[3])).all()
    assert set(strides[idx == 0].tolist()) == {8.0}  # tiny box: stride 8
    assert 32.0 in set(strides[idx == 2].tolist())  # 300x300 box: stride 32
    assert (idx == -1).sum() > 0.9 * len(idx)


def test_giou_loss_of_known_boxes():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    assert float(giou_loss(a, a)) == pytest.approx(0.0, abs=1e-6)
    # disjoint by a 10 px gap: IoU 0, hull 30x10=300, union 200 -> GIoU = -1/3
    b = torch.tensor([[20.0, 0.0, 30.0, 10.0]])
    assert float(giou_loss(a, b)) == pytest.approx(1 + 1 / 3, rel=1e-5)


def test_flip_keeps_boxes_on_their_pixels(tiny_pool):
    rng = np.random.default_rng(0)
    flipped = None
    for _ in range(20):  # draw until a flip happens (p=0.5)
        batch = sample_batch(tiny_pool, 1, rng, augment=True)
        i = next(k for k in range(len(tiny_pool)) if np.array_equal(batch.seg[0], tiny_pool.seg[k][:, ::-1]))
        if not np.array_equal(tiny_pool.seg[i], tiny_pool.seg[i][:, ::-1]):
            flipped = (batch, i)
            break
    assert flipped is not None
    batch, i = flipped
    w = TINY_HW[1]
    np.testing.assert_allclose(batch.boxes[0][:, 0], w - tiny_pool.boxes[i][:, 2])
    np.testing.assert_allclose(batch.depth[0], tiny_pool.depth[i][:, ::-1].astype(np.float32))
    np.testing.assert_allclose(batch.lidar[0, 0], tiny_pool.lidar[i][:, ::-1].astype(np.float32))


def _options(tmp_path: Path, steps: int, **kw) -> TrainOptions:
    return TrainOptions(
        network=kw.pop("network", "cam-n"),
        out=tmp_path / "out.pt",
        workdir=tmp_path / "work",
        input_hw=TINY_HW,
        steps=steps,
        batch_size=2,
        lr=3e-3,
        warmup_steps=3,
        pool_size=4,
        cache_dir=None,
        save_every=kw.pop("save_every", 100),
        threads=1,
        progress=False,
        augment=False,
        eval_scenes=0,
        **kw,
    )


def test_loss_falls_on_tiny_inputs(tmp_path, tiny_pool):
    result = train(_options(tmp_path, 16), pool=tiny_pool)
    losses = [h["loss"] for h in result.history]
    assert len(losses) == 16
    assert np.mean(losses[-4:]) < 0.8 * np.mean(losses[:4])


def test_resume_continues_exactly(tmp_path, tiny_pool):
    full = train(_options(tmp_path / "a", 4, network="fusion-n"), pool=tiny_pool)
    first = train(_options(tmp_path / "b", 4, network="fusion-n", stop_at=2), pool=tiny_pool)
    assert [h["step"] for h in first.history] == [1, 2]
    resumed = train(_options(tmp_path / "b", 4, network="fusion-n", resume=True), pool=tiny_pool)
    assert [h["step"] for h in resumed.history] == [3, 4]
    assert resumed.history[-1]["loss"] == pytest.approx(full.history[-1]["loss"], rel=1e-4)


def test_train_only_leaves_the_other_heads_bit_identical(tmp_path, tiny_pool):
    from exporters.networks import build_network

    torch.manual_seed(5)
    start = build_network("fusion-n", TINY_HW)
    torch.save({"state_dict": start.state_dict()}, tmp_path / "start.pt")
    opts = _options(
        tmp_path, 3, network="fusion-n", init_from=tmp_path / "start.pt", train_only=("depth_head",)
    )
    result = train(opts, pool=tiny_pool)
    assert len(result.history) == 3
    after = torch.load(tmp_path / "work" / "last.pt", weights_only=False)["model"]
    before = start.state_dict()
    frozen = [k for k in before if not k.startswith("depth_head.")]
    assert any("running_mean" in k for k in frozen)  # BN statistics are among what must not move
    changed = [k for k in frozen if not torch.equal(before[k], after[k])]
    assert not changed, changed[:5]
    # the LiDAR guide starts at zero and is what the depth loss trains
    assert not torch.count_nonzero(before["depth_head.guide.out.weight"])
    assert torch.count_nonzero(after["depth_head.guide.out.weight"])
    with pytest.raises(SpecError, match=r"no module \['dept_head'\]"):
        train(_options(tmp_path / "bad", 1, network="fusion-n", train_only=("dept_head",)), pool=tiny_pool)


def test_bad_options_are_named(tmp_path):
    with pytest.raises(SpecError, match="multiples of 32"):
        TrainOptions("cam-n", tmp_path / "x.pt", input_hw=(60, 96))
    with pytest.raises(SpecError, match="time budget"):
        TrainOptions("cam-n", tmp_path / "x.pt", time_budget_min=0)
    with pytest.raises(SpecError, match="nothing to resume"):
        train(_options(tmp_path / "none", 2, resume=True))
