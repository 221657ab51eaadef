"""GPU kit without TensorRT: what a GPU machine with torch CUDA has (numpy 2, no tritonclient).

Each head of cam-n and fusion-n in torch CUDA FP16 (autocast) against CPU FP32 within the FP16 bounds
(exporters.export.tolerances), and the network's throughput on that GPU (FP16, batches 1..64, CUDA
graphs) written to the results file (tests/gpu/results.py). Skips with one reason where torch or a GPU
is missing. The raw head tensors are compared (the contract's NMS runs in the exported graph, not in
the torch module): class maps by argmax agreement, depth and detection tensors by the 99th-percentile
relative error.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.conftest import TEST_HW
from tests.gpu.conftest import gpu_missing
from tests.gpu.results import add_result, frames_per_second

pytestmark = [pytest.mark.gpu]
NETWORKS = ("cam-n", "fusion-n")
BATCHES = (1, 2, 4, 8, 16, 32, 64)
SCENES = 8


@pytest.fixture(scope="module")
def torch_cuda():
    reason = gpu_missing()
    if reason:
        pytest.skip(reason)
    import torch

    return torch


def _network(torch, name: str):
    from exporters.export.run import load_network
    from exporters.weights import default_checkpoint

    return load_network(name, default_checkpoint(name), TEST_HW)


def _inputs(model, n: int) -> dict[str, np.ndarray]:
    from exporters.export.verify import scene_inputs, validation_seeds
    from world import render_scene

    spec = model.spec
    frames = [
        scene_inputs(spec, render_scene(s, hw=spec.input_hw, lidar=spec.fusion)) for s in validation_seeds(n)
    ]
    return {t.name: np.stack([f[t.name] for f in frames]) for t in spec.network_inputs}


def _forward(torch, model, inputs: dict, device: str, fp16: bool) -> dict[str, np.ndarray]:
    model = model.to(device)
    args = [torch.from_numpy(v).to(device) for v in inputs.values()]
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=fp16):
        out = model(*args)
    return {k: v.float().cpu().numpy() for k, v in out.items()}


def rel_error_quantile(ref: np.ndarray, cand: np.ndarray, q: float) -> float:
    return float(np.quantile(np.abs(cand - ref) / np.maximum(np.abs(ref), 1e-3), q))


@pytest.mark.parametrize("name", NETWORKS)
def test_fp16_heads_on_the_gpu_match_cpu_fp32_within_the_fp16_bounds(torch_cuda, name):
    from exporters.export.tolerances import TOLERANCES
    from exporters.networks.registry import DEPTH_OUT, SEG_OUT

    tol = TOLERANCES["fp16"]
    model = _network(torch_cuda, name)
    inputs = _inputs(model, SCENES)
    ref = _forward(torch_cuda, model, inputs, "cpu", fp16=False)
    cand = _forward(torch_cuda, model, inputs, "cuda", fp16=True)
    for head, r in ref.items():
        if head == SEG_OUT:
            agreement = float((r.argmax(1) == cand[head].argmax(1)).mean())
            print(f"{name} {head}: class agreement {agreement:.4f} (bound {tol.seg_agreement})")
            ok = agreement >= tol.seg_agreement
        else:
            bound = tol.depth_rel_error if head == DEPTH_OUT else tol.det_score_diff
            err = rel_error_quantile(r, cand[head], tol.depth_quantile)
            print(f"{name} {head}: p{tol.depth_quantile * 100:.0f} relative error {err:.4g} (bound {bound})")
            ok = err <= bound
        add_result("fp16_vs_fp32", {"network": name, "head": head, "passed": ok})
        assert ok, f"{name} {head} in FP16 on the GPU is outside the FP16 bounds"


@pytest.mark.parametrize("name", NETWORKS)
def test_network_throughput_on_the_gpu_in_fp16(torch_cuda, name):
    torch = torch_cuda
    model = _network(torch, name).to("cuda")
    one = _inputs(model, 1)
    for batch in BATCHES:
        static = [torch.from_numpy(np.repeat(v, batch, axis=0)).cuda() for v in one.values()]
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16):
            for _ in range(3):  # warm-up, also on a side stream before the capture
                model(*static)
            torch.cuda.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                model(*static)
            iterations = max(10, 256 // batch)
            start = time.perf_counter()
            for _ in range(iterations):
                graph.replay()
            torch.cuda.synchronize()
            seconds = time.perf_counter() - start
        fps = frames_per_second(batch, iterations, seconds)
        print(f"{name} batch {batch}: {fps:.0f} frames/s (FP16, CUDA graph)")
        add_result(
            "throughput",
            {
                "network": name,
                "batch": batch,
                "frames_per_s": round(fps, 1),
                "gpu": torch.cuda.get_device_name(0),
            },
        )
