"""The network registry: every registered network runs on CPU at a small size and honours the
interface the exporter, trainer and serving side rely on."""

from __future__ import annotations

import math

import pytest
import torch

from exporters.networks import (
    DEPTH_OUT,
    DET_OUT,
    NETWORKS,
    SEG_OUT,
    TASK_OUTPUTS,
    build_network,
    load_checkpoint,
    measure_complexity,
    save_checkpoint,
)
from exporters.networks.detection import STRIDES, num_anchors
from serving.errors import ExportError, SpecError

HW = (64, 96)  # small, two different multiples of 32, so transposed axes would show
BATCH = 2
DET_NETWORKS = [n for n, c in NETWORKS.items() if "detection" in c.tasks]
FUSION_NETWORKS = [n for n, c in NETWORKS.items() if c.fusion]
CAMERA_NETWORKS = [n for n, c in NETWORKS.items() if not c.fusion]


def _inputs(name: str, seed: int = 0, batch: int = BATCH, hw: tuple[int, int] = HW):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (batch, 3, *hw), dtype=torch.uint8, generator=g)
    if not NETWORKS[name].fusion:
        return images, None
    hits = torch.rand(batch, 1, *hw, generator=g) < 0.05  # sparse, like projected LiDAR
    lidar = torch.where(hits, 2.0 + 78.0 * torch.rand(batch, 1, *hw, generator=g), 0.0)
    return images, lidar


def _net(name: str, seed: int = 0, hw: tuple[int, int] = HW):
    torch.manual_seed(seed)
    return build_network(name, hw).eval()


@pytest.fixture(scope="module")
def outputs():
    """Each network's outputs on the same seeded inputs, computed once."""
    cache: dict[str, tuple] = {}

    def get(name: str):
        if name not in cache:
            net = _net(name)
            images, lidar = _inputs(name)
            with torch.no_grad():
                cache[name] = (net, net(images, lidar))
        return cache[name]

    return get


def test_registry_holds_the_agreed_names():
    expected = {"cam-n", "cam-s", "cam-m", "fusion-n", "fusion-s", "fusion-m"}
    expected |= {"cam-n-det", "cam-n-seg", "cam-n-depth"}
    assert set(NETWORKS) == expected


@pytest.mark.parametrize("name", list(NETWORKS))
def test_forward_gives_the_outputs_of_the_spec(name, outputs):
    net, out = outputs(name)
    spec = net.spec
    assert spec.name == name and spec.input_hw == HW and spec.fusion == NETWORKS[name].fusion
    assert set(out) == {TASK_OUTPUTS[t] for t in spec.tasks}
    h, w = HW
    if DET_OUT in out:
        det = out[DET_OUT]
        assert det.dtype == torch.float32
        assert det.shape == (BATCH, num_anchors(HW), 5 + len(spec.det_classes))
        assert det.shape[1] == sum((h // s) * (w // s) for s in STRIDES) == net.anchor_points()[0].shape[0]
        assert torch.isfinite(det).all()
    if SEG_OUT in out:
        seg = out[SEG_OUT]
        assert seg.dtype == torch.float32 and seg.shape == (BATCH, len(spec.seg_classes), h, w)
        assert torch.isfinite(seg).all()
    if DEPTH_OUT in out:
        depth = out[DEPTH_OUT]
        assert depth.dtype == torch.float32
        assert depth.shape == (BATCH, 1, *spec.depth_hw) == (BATCH, 1, h // 2, w // 2)
        assert (depth > 0).all() and (depth <= spec.max_depth_m).all()


@pytest.mark.parametrize("name", ["cam-n", "fusion-n"])
def test_each_image_is_processed_independently_of_the_batch(name, outputs):
    net, out = outputs(name)
    images, lidar = _inputs(name)
    with torch.no_grad():
        single = net(images[1:], None if lidar is None else lidar[1:])
    for key, value in single.items():
        torch.testing.assert_close(value[0], out[key][1], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", DET_NETWORKS)
def test_decoded_boxes_are_finite_and_ordered(name, outputs):
    net, out = outputs(name)
    boxes, scores = net.decode_detections(out[DET_OUT])
    a = num_anchors(HW)
    assert boxes.shape == (BATCH, a, 4) and scores.shape == (BATCH, a, len(net.spec.det_classes))
    assert torch.isfinite(boxes).all()
    assert (boxes[..., 2] >= boxes[..., 0]).all() and (boxes[..., 3] >= boxes[..., 1]).all()
    assert ((scores >= 0) & (scores <= 1)).all()


def test_decode_follows_the_documented_formula():
    net = build_network("cam-n-det", HW)
    points, strides = net.anchor_points()
    h, w = HW
    # first cell of each level: centre (s/2, s/2); the last point: the last stride-32 cell
    starts = [0, (h // 8) * (w // 8), (h // 8) * (w // 8) + (h // 16) * (w // 16)]
    for start, s in zip(starts, STRIDES, strict=True):
        assert points[start].tolist() == [s / 2, s / 2] and strides[start].item() == s
    assert points[-1].tolist() == [w - 16, h - 16] and strides[-1].item() == 32
    raw = torch.zeros(1, points.shape[0], 8)
    raw[..., :4] = math.log(math.e - 1)  # softplus -> 1: each side one stride from the centre
    raw[..., 4] = 0.0  # objectness 0.5
    raw[..., 5:] = torch.tensor([0.0, 100.0, -100.0])
    boxes, scores = net.decode_detections(raw)
    torch.testing.assert_close(boxes[0, 0], torch.tensor([-4.0, -4.0, 12.0, 12.0]))
    torch.testing.assert_close(boxes[0, -1], torch.tensor([w - 48.0, h - 48.0, w + 16.0, h + 16.0]))
    torch.testing.assert_close(scores[0, 0], torch.tensor([0.25, 0.5, 0.0]))


def test_decode_rejects_raw_detections_of_another_input_size(outputs):
    net, out = outputs("cam-n")
    with pytest.raises(SpecError, match="anchor points"):
        net.decode_detections(out[DET_OUT], input_hw=(96, 96))


@pytest.mark.parametrize("name", FUSION_NETWORKS)
def test_fusion_accepts_no_returns_and_uses_the_lidar(name, outputs):
    net, out = outputs(name)
    images, lidar = _inputs(name)
    with torch.no_grad():
        empty = net(images, torch.zeros_like(lidar))
        other = net(images, lidar.roll(7, dims=-1))
    for key in out:
        assert torch.isfinite(empty[key]).all()
        assert (out[key] - empty[key]).abs().max() > 1e-4, f"{key} ignores the LiDAR input"
        assert (out[key] - other[key]).abs().max() > 1e-4, f"{key} ignores where the returns are"


def test_fusion_treats_invalid_returns_as_none():
    net = _net("fusion-n")
    images, _ = _inputs("fusion-n")
    empty = torch.zeros(BATCH, 1, *HW)
    invalid = empty.clone()
    invalid[:, :, ::5, ::7] = float("nan")
    invalid[:, :, 1::5, ::7] = float("inf")
    invalid[:, :, 2::5, ::7] = -3.0
    with torch.no_grad():
        a, b = net(images, empty), net(images, invalid)
    for key in a:
        torch.testing.assert_close(a[key], b[key])


def test_input_contract_is_enforced_with_clear_errors():
    cam, fusion = _net("cam-n"), _net("fusion-n")
    images, lidar = _inputs("fusion-n")
    with pytest.raises(SpecError, match="not a multiple of 32"):
        cam(torch.zeros(1, 3, 64, 100, dtype=torch.uint8))
    with pytest.raises(SpecError, match="multiples of 32"):
        build_network("cam-n", (64, 100))
    with pytest.raises(SpecError, match=r"\[B, 3, H, W\]"):
        cam(torch.zeros(1, 64, 96, dtype=torch.uint8))
    with pytest.raises(SpecError, match="int64"):
        cam(images.long())
    with pytest.raises(SpecError, match="camera-only"):
        cam(images, lidar)
    with pytest.raises(SpecError, match="pass lidar_depth"):
        fusion(images)
    with pytest.raises(SpecError, match=r"lidar_depth must be \[B, 1, 64, 96\]"):
        fusion(images, lidar[:, :, :32])
    with pytest.raises(SpecError, match="batch"):
        fusion(images, lidar[:1])
    with pytest.raises(SpecError, match="unknown network 'cam-x'.*cam-n"):
        build_network("cam-x")


def test_float_images_on_the_uint8_scale_give_the_same_outputs(outputs):
    net, out = outputs("cam-n")
    images, _ = _inputs("cam-n")
    with torch.no_grad():
        as_float = net(images.float())
    for key in out:
        torch.testing.assert_close(as_float[key], out[key])


def test_single_task_networks_share_the_backbone_and_neck():
    fused = build_network("cam-n", HW).state_dict()
    for name in ("cam-n-det", "cam-n-seg", "cam-n-depth"):
        single = build_network(name, HW).state_dict()
        shared = {k: v.shape for k, v in single.items() if k.startswith(("backbone.", "neck."))}
        assert shared == {k: v.shape for k, v in fused.items() if k.startswith(("backbone.", "neck."))}
        heads = {k.split(".")[0] for k in single} - {"backbone", "neck"}
        assert len(heads) == 1


@pytest.mark.parametrize("name", ["cam-n", "fusion-n"])
def test_checkpoint_round_trip_gives_identical_outputs(name, outputs, tmp_path):
    net, out = outputs(name)
    path = save_checkpoint(net, tmp_path / f"{name}.pt", {"steps": 12, "note": "unit test"})
    torch.manual_seed(123)  # a different init, so only the loaded weights can reproduce `out`
    loaded, meta = load_checkpoint(path, network=name)
    assert meta == {"steps": 12, "note": "unit test"}
    assert loaded.spec == net.spec and not loaded.training
    images, lidar = _inputs(name)
    with torch.no_grad():
        again = loaded(images, lidar)
    for key in out:
        assert torch.equal(again[key], out[key])
    resized, _ = load_checkpoint(path, input_hw=(96, 128))
    assert resized.spec.input_hw == (96, 128)


def test_mismatched_checkpoints_give_clear_errors(outputs, tmp_path):
    net, _ = outputs("cam-n")
    path = save_checkpoint(net, tmp_path / "cam-n.pt")
    with pytest.raises(SpecError, match="trained for cam-n, not fusion-n"):
        load_checkpoint(path, network="fusion-n")
    data = torch.load(path, weights_only=True)
    data["network"] = "fusion-n"
    torch.save(data, tmp_path / "relabelled.pt")
    with pytest.raises(
        SpecError, match=r"does not match network fusion-n: missing keys \(\d+\): lidar_encoder"
    ):
        load_checkpoint(tmp_path / "relabelled.pt")
    data["network"] = "cam-s"
    torch.save(data, tmp_path / "smaller.pt")
    with pytest.raises(SpecError, match="shape mismatches"):
        load_checkpoint(tmp_path / "smaller.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ExportError, match="cannot be read") as garbage:
        load_checkpoint(tmp_path / "garbage.pt")
    assert "\n" not in str(garbage.value)  # one line naming the cause, not torch's advice
    torch.save({"weights": {}}, tmp_path / "foreign.pt")
    with pytest.raises(ExportError, match="not a perception-serving checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    with pytest.raises(ExportError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_complexity_counts_parameters_and_scales_with_pixels():
    small = measure_complexity("cam-n", (64, 96))
    double = measure_complexity("cam-n", (128, 96))
    assert small.params == sum(p.numel() for p in build_network("cam-n").parameters())
    assert 1.0e6 < small.params < 2.5e6  # `n` stays small enough for CPU training
    assert double.flops == pytest.approx(2 * small.flops, rel=0.02)  # fully convolutional
    assert measure_complexity("cam-s", (64, 96)).flops > 3 * small.flops


def test_fused_network_costs_less_than_its_three_single_task_networks():
    fused = measure_complexity("cam-n", HW).flops
    singles = [measure_complexity(f"cam-n-{t}", HW).flops for t in ("det", "seg", "depth")]
    assert all(s < fused for s in singles)
    assert sum(singles) > 2.5 * fused  # the shared backbone + neck dominate the cost
