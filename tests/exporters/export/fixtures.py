"""Shared by the export tests: small networks whose random init produces real detections."""

from __future__ import annotations

import numpy as np

SMALL_HW = (128, 224)


def lively_network(name: str, input_hw=SMALL_HW, seed: int = 0):
    """A registered network at ``input_hw`` with a seeded init whose detections are not degenerate.

    The networks' own init (focal-style prior 0.01, default conv init) scores every anchor ~1e-4,
    so NMS would never see a candidate. Here convs are He-normal and each objectness / class
    prediction conv is rescaled so that its logits on noise input have std 1.5 around a fixed
    centre: scores then spread over 0..1 (no saturated exact ties at 1.0, not all stuck at the
    threshold) and a few hundred anchors pass the score threshold.
    """
    import torch

    from exporters.networks import build_network

    torch.manual_seed(seed)
    net = build_network(name, input_hw)
    preds = {}
    for module_name, module in net.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        if module_name.endswith(("obj_pred", "cls_pred")):
            torch.nn.init.zeros_(module.bias)
            preds[module_name] = module
    net.eval()
    seen = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, o)) for n, m in preds.items()]
    inputs = random_inputs(net.spec, 2, seed=seed)
    with torch.no_grad():
        net(*(torch.from_numpy(inputs[t.name]) for t in net.spec.network_inputs))
        for module_name, module in preds.items():
            out = seen[module_name]
            k = 1.5 / max(float(out.std()), 1e-6)
            centre = 1.0 if module_name.endswith("obj_pred") else -0.5
            module.weight.mul_(k)
            module.bias.fill_(centre - float(out.mean()) * k)
    for h in hooks:
        h.remove()
    return net


def random_inputs(spec, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Noise images (and a sparse LiDAR image for fusion networks) in the spec's input layout."""
    rng = np.random.default_rng(seed)
    h, w = spec.input_hw
    inputs = {"images": rng.integers(0, 256, (batch, 3, h, w), dtype=np.uint8)}
    if spec.fusion:
        depth = rng.uniform(2.0, 80.0, (batch, 1, h, w)).astype(np.float32)
        inputs["lidar_depth"] = np.where(rng.random((batch, 1, h, w)) < 0.05, depth, 0).astype(np.float32)
    return inputs
