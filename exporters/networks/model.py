"""PerceptionNet: one CSP backbone and FPN+PAN neck feeding the heads of the tasks a network serves,
optionally with the LiDAR branch (see exporters.networks.lidar for the fusion rule)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from exporters.networks import detection
from exporters.networks.backbone import CSPBackbone
from exporters.networks.dense import DepthHead, SegmentationHead
from exporters.networks.detection import DetectionHead
from exporters.networks.lidar import GatedFusion, LidarEncoder
from exporters.networks.neck import FPNPAN
from exporters.networks.registry import DEPTH_OUT, DET_OUT, SEG_OUT, NetworkConfig, get_config
from serving.errors import SpecError
from serving.spec import DEFAULT_INPUT_HW, ModelSpec


class PerceptionNet(nn.Module):
    """``forward(images, lidar_depth=None) -> dict`` with the outputs of the network's tasks:

    * ``"det"``: raw detections ``[B, A, 5 + C]`` float32 (see exporters.networks.detection),
    * ``"seg"``: class logits ``[B, S, H, W]``,
    * ``"depth"``: metres ``[B, 1, H / depth_stride, W / depth_stride]``, strictly positive.

    ``images`` are RGB ``[B, 3, H, W]``, uint8 (or float on the same 0..255 scale, for training
    augmentation), H and W multiples of 32; normalisation from ``spec.normalisation`` happens here.
    Fusion networks also take ``lidar_depth`` float32 ``[B, 1, H, W]`` (metres, 0 = no return).
    The network is fully convolutional: any multiple-of-32 size runs; ``spec.input_hw`` is the size
    it is exported and decoded at unless told otherwise.
    """

    norm_scale: torch.Tensor
    norm_shift: torch.Tensor

    def __init__(self, config: NetworkConfig, input_hw: Sequence[int] = DEFAULT_INPUT_HW):
        super().__init__()
        self.config = config
        self.spec: ModelSpec = config.spec(input_hw)
        w = config.widths
        self.backbone = CSPBackbone(w, config.depths)
        self.neck = FPNPAN(w[2], w[3], w[4], config.neck_depth)
        self.lidar_encoder: LidarEncoder | None = None
        self.fuse8: GatedFusion | None = None
        self.fuse16: GatedFusion | None = None
        if config.fusion:
            self.lidar_encoder = LidarEncoder(w[1] // 2, w[2], w[3], self.spec.max_depth_m)
            self.fuse8 = GatedFusion(w[2])
            self.fuse16 = GatedFusion(w[3])
        tasks = self.spec.tasks
        self.det_head = (
            DetectionHead(
                (w[2], w[3], w[4]), len(self.spec.det_classes), config.head_width, config.head_depth
            )
            if "detection" in tasks
            else None
        )
        self.seg_head = (
            SegmentationHead(w[2], w[1], config.dense_width, len(self.spec.seg_classes))
            if "segmentation" in tasks
            else None
        )
        self.depth_head = (
            DepthHead(
                w[2],
                w[1],
                config.dense_width,
                self.spec.depth_stride,
                self.spec.max_depth_m,
                guide_channels=self.lidar_encoder.guide_channels if self.lidar_encoder else 0,
            )
            if "depth" in tasks
            else None
        )
        norm = self.spec.normalisation
        scale = torch.tensor([1.0 / s for s in norm.std]).view(1, 3, 1, 1)
        shift = torch.tensor([-m / s for m, s in zip(norm.mean, norm.std, strict=True)]).view(1, 3, 1, 1)
        # derived from the spec, so not part of a checkpoint
        self.register_buffer("norm_scale", scale, persistent=False)
        self.register_buffer("norm_shift", shift, persistent=False)

    @property
    def name(self) -> str:
        return self.spec.name

    def forward(
        self, images: torch.Tensor, lidar_depth: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        self._check_inputs(images, lidar_depth)
        x = images.to(torch.float32) * self.norm_scale + self.norm_shift
        c2, c3, c4, c5 = self.backbone(x)
        lidar4: torch.Tensor | None = None
        if self.lidar_encoder is not None and self.fuse8 is not None and self.fuse16 is not None:
            if lidar_depth is None:  # unreachable after _check_inputs; narrows the type
                raise SpecError(f"{self.spec.name} needs lidar_depth")
            lidar4, l8, l16 = self.lidar_encoder(lidar_depth.to(torch.float32))
            c3 = self.fuse8(c3, l8)
            c4 = self.fuse16(c4, l16)
        p3, p4, p5 = self.neck(c3, c4, c5)
        out: dict[str, torch.Tensor] = {}
        if self.det_head is not None:
            out[DET_OUT] = self.det_head([p3, p4, p5])
        if self.seg_head is not None:
            out[SEG_OUT] = self.seg_head(p3, c2)
        if self.depth_head is not None:
            out[DEPTH_OUT] = self.depth_head(p3, c2, lidar4)
        return out

    def anchor_points(self, input_hw: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Anchor centres ``[A, 2]`` (x, y pixels) and strides ``[A]`` at ``input_hw``
        (default ``spec.input_hw``), in the order of the raw detection rows."""
        hw = self.spec.input_hw if input_hw is None else input_hw
        return detection.anchor_points(hw, device=self.norm_scale.device)

    def decode_detections(
        self, det_raw: torch.Tensor, input_hw: Sequence[int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw ``[B, A, 5 + C]`` -> (boxes ``[B, A, 4]`` xyxy model-input pixels, scores ``[B, A, C]``
        = sigmoid(obj) * sigmoid(cls)); ``input_hw`` is the size the network ran at."""
        hw = self.spec.input_hw if input_hw is None else input_hw
        points, strides = detection.anchor_points(hw, device=det_raw.device, dtype=det_raw.dtype)
        return detection.decode_detections(det_raw, points, strides)

    def _check_inputs(self, images: torch.Tensor, lidar_depth: torch.Tensor | None) -> None:
        name = self.spec.name
        if images.dim() != 4 or images.shape[1] != 3:
            raise SpecError(f"{name}: images must be [B, 3, H, W] RGB, got shape {tuple(images.shape)}")
        if images.dtype != torch.uint8 and not images.dtype.is_floating_point:
            raise SpecError(
                f"{name}: images must be uint8 (or float on the 0..255 scale), got {images.dtype}"
            )
        h, w = int(images.shape[2]), int(images.shape[3])
        if h % 32 or w % 32 or h == 0 or w == 0:
            dh, dw = DEFAULT_INPUT_HW
            raise SpecError(
                f"{name}: input size {h}x{w} is not a multiple of 32 (letterbox to e.g. {dh}x{dw})"
            )
        if not self.spec.fusion:
            if lidar_depth is not None:
                raise SpecError(f"{name} is a camera-only network; it takes no lidar_depth (use fusion-*)")
            return
        if lidar_depth is None:
            raise SpecError(
                f"{name} is a fusion network: pass lidar_depth [B, 1, H, W] (metres, 0 = no return)"
            )
        if lidar_depth.dim() != 4 or lidar_depth.shape[1] != 1 or tuple(lidar_depth.shape[2:]) != (h, w):
            raise SpecError(
                f"{name}: lidar_depth must be [B, 1, {h}, {w}] (images size), got {tuple(lidar_depth.shape)}"
            )
        if not lidar_depth.dtype.is_floating_point:
            raise SpecError(f"{name}: lidar_depth must be float (metres), got {lidar_depth.dtype}")
        # a symbolic batch (torch.export with a dynamic batch axis) cannot be compared eagerly
        if not torch.compiler.is_compiling() and lidar_depth.shape[0] != images.shape[0]:
            raise SpecError(
                f"{name}: lidar_depth batch {lidar_depth.shape[0]} != images batch {images.shape[0]}"
            )


def build_network(name: str, input_hw: Sequence[int] = DEFAULT_INPUT_HW) -> PerceptionNet:
    """A freshly initialised registered network (seed torch beforehand for a reproducible init)."""
    return PerceptionNet(get_config(name), input_hw)
