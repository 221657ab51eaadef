"""Fixtures of the client tests: tiny generated ONNX models and small generated videos."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.tiny_onnx import byom_specs, make_tiny_onnx, tiny_spec


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    return make_tiny_onnx(tiny_spec(), path)


@pytest.fixture(scope="session")
def tiny_fusion_onnx(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny") / "tiny_fusion.onnx"
    return make_tiny_onnx(tiny_spec(fusion=True), path)


def write_video(path: Path, frames: int, hw: tuple[int, int] = (96, 160), fps: float = 10.0) -> Path:
    """A moving bright disc over a gradient, deterministic; mp4v like the pipeline writes."""
    h, w = hw
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
    for i in range(frames):
        img = np.zeros((h, w, 3), np.uint8)
        img[:, :, 1] = np.linspace(0, 255, w)[None].astype(np.uint8)
        img[:, :, 0] = (i * 7) % 256
        cv2.circle(img, ((i * 5) % w, h // 2), h // 6, (255, 255, 255), -1)
        writer.write(img)
    writer.release()
    return path


@pytest.fixture(scope="session")
def byom_onnx(tmp_path_factory) -> dict[str, Path]:
    """The tiny models of tests.tiny_onnx.byom_specs (other heads, other sizes) by spec name."""
    d = tmp_path_factory.mktemp("byom")
    return {s.name: make_tiny_onnx(s, d / f"{s.name}.onnx") for s in byom_specs()}


@pytest.fixture(scope="session")
def tiny_repository(tmp_path_factory, tiny_onnx, tiny_fusion_onnx, byom_onnx) -> Path:
    """A real model repository (serving.repository): the tiny camera and fusion models (ensembles
    perception / perception_fusion) and the byom models (seg360_pipeline, detseg_pipeline), so
    that one server holds several pipelines side by side."""
    from serving.repository import build_repository

    repo = tmp_path_factory.mktemp("tiny_repo")
    build_repository([tiny_onnx, tiny_fusion_onnx, *byom_onnx.values()], repo)
    return repo


@pytest.fixture(scope="session")
def tiny_server(tiny_repository):
    """A real tritonserver serving the tiny models (starts in ~10 s; always stopped at the end)."""
    from serving.launcher import ServerOptions, TritonServer

    server = TritonServer(ServerOptions(tiny_repository))
    server.start()
    try:
        yield server
    finally:
        server.stop()
