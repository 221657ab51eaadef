"""GPU smoke kit, serving: the `tensorrt_plan` repository built from the kit's engines runs on a
tritonserver that has the tensorrt backend (the NGC Triton image's, or $PERCEPT_TRITONSERVER),
answers batch-1 and concurrent requests, and agrees with the python-engine repository of the same
network (the wheel's tritonserver running ONNX Runtime) within the engine precision's bounds."""

from __future__ import annotations

import numpy as np
import pytest

from tests.gpu.conftest import KINDS, batch_inputs, precision_of, tritonserver_binary
from tests.serving.triton_helpers import output_differences

pytestmark = [pytest.mark.gpu, pytest.mark.trt, pytest.mark.triton]

CONCURRENT = 8


@pytest.fixture(scope="module")
def python_server(gpu, cam_onnx, tmp_path_factory):
    """The python-engine repository of the FP32 ONNX on the nvidia-pytriton wheel's tritonserver."""
    import importlib.util

    if importlib.util.find_spec("pytriton") is None:
        pytest.skip("nvidia-pytriton is not installed (the python-engine reference server)")
    from serving.launcher import ServerOptions, TritonServer
    from serving.model_config import RepositoryOptions
    from serving.repository import build_repository

    repo = tmp_path_factory.mktemp("python-repo")
    build_repository([cam_onnx], repo, RepositoryOptions(engine="python"))
    server = TritonServer(ServerOptions(repository=repo, startup_timeout_s=300))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _serve_plan(onnx, tmp_path):
    from serving.launcher import ServerOptions, TritonServer
    from serving.model_config import RepositoryOptions
    from serving.repository import build_repository

    binary = tritonserver_binary()
    if binary is None:
        pytest.skip(
            "no tritonserver with the tensorrt backend: run inside the NGC Triton image or set "
            "PERCEPT_TRITONSERVER to one"
        )
    repo = tmp_path / "repo"
    build_repository([onnx], repo, RepositoryOptions(engine="tensorrt_plan"))  # checks the sidecar
    return TritonServer(ServerOptions(repository=repo, tritonserver=binary, startup_timeout_s=300))


def _raw(url: str, model: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    from tests.serving.triton_helpers import infer

    return infer(url, model, inputs)


def _stack(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


@pytest.mark.parametrize("kind", KINDS)
def test_tensorrt_plan_repository_answers_like_the_python_engine(
    gpu, engines, spec, scenes, python_server, tmp_path, kind
):
    from exporters.export.tolerances import TOLERANCES
    from serving.model_config import network_model_name
    from tests.serving.triton_helpers import check_pipelines_answer_with_their_heads, concurrently

    onnx, _, _ = engines(kind)
    model = network_model_name(spec)
    frames = [scenes["empty"], scenes["cluttered"], *scenes["ordinary"]]
    singles = [batch_inputs(spec, [s]) for s in frames]
    tolerances = TOLERANCES[precision_of(kind)]
    reference = _stack([_raw(python_server.grpc_url, model, x) for x in singles])
    server = _serve_plan(onnx, tmp_path)
    server.start()
    try:
        url = server.grpc_url
        one_by_one = _stack([_raw(url, model, x) for x in singles])  # batch-1 requests
        problems = output_differences(reference, one_by_one, spec, tolerances)
        assert not problems, (problems, server.log_tail(60))
        # concurrent requests: the dynamic batcher forms batches inside the engine's profile
        fns = [lambda x=x: _raw(url, model, x) for x in singles[:CONCURRENT]]
        together = _stack(concurrently(fns))  # type: ignore[arg-type]
        problems = output_differences(reference, together, spec, tolerances)
        assert not problems, (problems, server.log_tail(60))
        from serving.model_config import ensemble_name

        frame = scenes["cluttered"].image
        check_pipelines_answer_with_their_heads(
            url, {spec.name: ensemble_name(spec)}, {spec.name: spec}, frame
        )
    finally:
        server.stop()
