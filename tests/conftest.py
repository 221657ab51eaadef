"""Session fixtures shared by every test that talks to the real tritonserver.

``triton_server`` exports cam-n and fusion-n to ONNX at a reduced input size (shipped weights when
``exporters/weights`` has them, else a seeded random init), builds a model repository in a temporary
folder with :func:`serving.repository.build_repository`, starts one :class:`TritonServer` for the
whole session and always stops it. A test that fails while using it gets the server's log tail in
its report. Exported ONNX files are cached in pytest's cache folder and reused while
:func:`exporters.export.freshness.export_is_current` says so (same weights, options and
graph-shaping sources), so that repeated runs skip the ~30 s per network export.
"""

from __future__ import annotations

import logging
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from serving.ensemble import FrameLimits
from serving.spec import ModelSpec

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
TEST_HW = (192, 320)  # half of 384x640: a quarter of the CPU time per frame, same aspect ratio
TEST_NETWORKS = ("cam-n", "fusion-n")
# the repository's preprocess limits: low, so that a "too large" request stays cheap to send
TEST_LIMITS = FrameLimits(max_pixels=4_000_000, max_points=100_000, max_request_bytes=8 << 20)
TEST_MAX_PIXELS = TEST_LIMITS.max_pixels
TEST_SEED = 0
_REAL_KEY = pytest.StashKey[bool]()


@dataclass(frozen=True)
class TritonFixture:
    """What tests get: where the server listens, its repository and the ONNX files it serves."""

    url: str  # gRPC host:port
    http_url: str
    metrics_url: str
    repository: Path
    onnx: dict[str, Path]  # network name ("cam-n") -> exported ONNX
    specs: dict[str, ModelSpec]
    server: object  # serving.launcher.TritonServer
    real_networks: bool  # False: the exporters are not available, tiny spec-following ONNX served

    def log_tail(self, lines: int = 60) -> str:
        return self.server.log_tail(lines)  # type: ignore[attr-defined]


def _export_real(name: str, path: Path) -> None:
    from exporters.export.freshness import export_if_stale
    from exporters.export.options import BatchProfile, OnnxOptions
    from exporters.weights import shipped_checkpoint

    options = OnnxOptions(profile=BatchProfile(1, 4, 8), checkpoint=shipped_checkpoint(name))
    export_if_stale(name, path, options, input_hw=TEST_HW, seed=TEST_SEED)


def _exporters_available() -> bool:
    try:
        import exporters.export.onnx_export  # noqa: F401
        import exporters.networks  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="session")
def exported_onnx(request, tmp_path_factory) -> dict[str, Path]:
    """cam-n and fusion-n exported at TEST_HW; tiny spec-following ONNX where exporters are missing."""
    real = _exporters_available()
    cache_root = (
        Path(request.config.cache.mkdir("perception-onnx"))
        if getattr(request.config, "cache", None) is not None  # -p no:cacheprovider
        else tmp_path_factory.mktemp("perception-onnx")
    )
    cache = cache_root / ("real" if real else "tiny")
    out = {}
    for name in TEST_NETWORKS:
        cached = cache / name / "model.onnx"
        if real:
            _export_real(name, cached)  # a no-op while the cached file is current
        elif not cached.exists():
            from tests.tiny_onnx import make_tiny_onnx

            tmp = tmp_path_factory.mktemp(f"export-{name}") / "model.onnx"
            make_tiny_onnx(ModelSpec(name=name, input_hw=TEST_HW, fusion=name.startswith("fusion")), tmp)
            cached.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(tmp, cached)
        out[name] = cached
    request.config.stash[_REAL_KEY] = real
    return out


@pytest.fixture(scope="session")
def triton_repository(exported_onnx, tmp_path_factory) -> Path:
    from serving.model_config import RepositoryOptions
    from serving.repository import build_repository

    repo = tmp_path_factory.mktemp("model_repository")
    # one single-threaded network instance: little CPU on a shared 2-core machine, and batches form
    options = RepositoryOptions(limits=TEST_LIMITS, network_instances=1, intra_op_threads=1)
    build_repository(list(exported_onnx.values()), repo, options)
    return repo


@pytest.fixture(scope="session")
def triton_server(request, exported_onnx, triton_repository) -> TritonFixture:
    """One real tritonserver for the session, on free ports of 127.0.0.1; always stopped."""
    from serving.launcher import ServerOptions, TritonServer
    from serving.onnx_meta import read_spec

    server = TritonServer(ServerOptions(repository=triton_repository, startup_timeout_s=240))
    server.start()
    try:
        yield TritonFixture(
            url=server.grpc_url,
            http_url=server.http_url,
            metrics_url=server.metrics_url,
            repository=triton_repository,
            onnx=exported_onnx,
            specs={name: read_spec(path) for name, path in exported_onnx.items()},
            server=server,
            real_networks=request.config.stash.get(_REAL_KEY, False),
        )
    finally:
        server.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed and "triton_server" in getattr(item, "fixturenames", ()):
        fixture = item.funcargs.get("triton_server")
        if fixture is not None:
            report.sections.append(("tritonserver log tail", fixture.log_tail()))
            print(f"\n--- tritonserver log tail ---\n{fixture.log_tail()}", file=sys.stderr)
