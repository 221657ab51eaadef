from __future__ import annotations

from pathlib import Path

import pytest

from tests.tiny_onnx import make_tiny_onnx, tiny_spec


@pytest.fixture
def tiny(tmp_path) -> Path:
    """A tiny network file, batch profile up to 8 (the defaults' max batch)."""
    return make_tiny_onnx(
        tiny_spec(), tmp_path / "model.onnx", {"batch_profile": {"min": 1, "opt": 2, "max": 8}}
    )
