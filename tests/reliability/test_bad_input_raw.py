"""Bad input to the raw networks and to the ensembles' own steps, which Triton serves by name too.

Same check as test_bad_input (its own error, good batch-mates on both ensembles answer as alone,
server live and ready), against ``cam_n`` / ``fusion_n`` and the ``*_decode`` / ``*_frame`` models:
a client can call an ensemble's step directly, with tensors the ensemble would never hand it.
Also the admin RPCs a client library calls first (model config and metadata) with bad names.
About 10 s here.
"""

from __future__ import annotations

import time

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from tests.reliability.bad_input_cases import channel, check_case, server_state, tensor_request

pytestmark = pytest.mark.triton

INVALID, NOT_FOUND, OK = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.OK


def _zeros(spec, dtype_override=None, **shapes):
    """Zero inputs of ``spec``'s network (batch 1), with the shapes given by name replaced."""
    out = {}
    for t in spec.network_inputs:
        shape = shapes.get(t.name, (1, *t.triton_dims(True)))
        out[t.name] = np.zeros(shape, dtype_override or t.dtype)
    return out


def _frame(hw, source_hw):
    """A frame model request: a grey frame of ``hw`` said to show a source of ``source_hw``."""
    return {"image": np.full((1, *hw, 3), 128, np.uint8), "source_hw": np.array([source_hw], np.int32)}


# id -> (specs -> request, status, pattern)
CASES = {
    "raw cam_n: images FP32": (
        lambda sp: tensor_request("cam_n", _zeros(sp["cam-n"], np.float32)),
        INVALID,
        r"input 'images' data-type is 'FP32', but model 'cam_n' expects 'UINT8'",
    ),
    "raw cam_n: images of another size": (
        lambda sp: tensor_request("cam_n", _zeros(sp["cam-n"], images=(1, 3, 100, 100))),
        INVALID,
        r"unexpected shape for input 'images' for model 'cam_n'",
    ),
    "raw cam_n: images NHWC": (
        lambda sp: tensor_request("cam_n", _zeros(sp["cam-n"], images=(1, *sp["cam-n"].input_hw, 3))),
        INVALID,
        r"unexpected shape for input 'images'",
    ),
    "raw cam_n: batch 9": (
        lambda sp: tensor_request("cam_n", _zeros(sp["cam-n"], images=(9, 3, *sp["cam-n"].input_hw))),
        INVALID,
        r"batch-size must be <= 8 for 'cam_n'",
    ),
    "raw fusion_n: no lidar_depth": (
        lambda sp: tensor_request("fusion_n", {"images": _zeros(sp["fusion-n"])["images"]}),
        INVALID,
        r"expected 2 inputs but got 1 inputs for model 'fusion_n'",
    ),
    "raw fusion_n: NaN lidar_depth": (
        lambda sp: tensor_request(
            "fusion_n",
            {
                **_zeros(sp["fusion-n"]),
                "lidar_depth": np.full((1, 1, *sp["fusion-n"].input_hw), np.nan, np.float32),
            },
        ),
        INVALID,
        r"lidar_depth holds NaN or Inf",
    ),
    "decode step: camera model sent points": (
        lambda sp: tensor_request(
            "cam_n_decode",
            {"image": np.zeros((1, 64, 64, 3), np.uint8), "points": np.zeros((1, 5, 4), np.float32)},
        ),
        INVALID,
        r"unexpected inference input 'points' for model 'cam_n_decode'",
    ),
    "frame model: no source_hw": (
        lambda sp: tensor_request("cam_n_frame", {"image": np.zeros((1, 64, 64, 3), np.uint8)}),
        INVALID,
        r"expected 2 inputs but got 1 inputs for model 'cam_n_frame'",
    ),
    "frame model: source_hw 0x0": (
        lambda sp: tensor_request("cam_n_frame", _frame((64, 64), (0, 0))),
        INVALID,
        r"source_hw must be \[batch,2\] positive",
    ),
    "frame model: source of 2^31-1 squared": (
        lambda sp: tensor_request("cam_n_frame", _frame((64, 64), (2**31 - 1, 2**31 - 1))),
        INVALID,
        r"source frame of 2147483647x2147483647 = \d+ pixels exceeds the limit",
    ),
    "frame model: 8x8 frame": (
        lambda sp: tensor_request("cam_n_frame", _frame((8, 8), (8, 8))),
        INVALID,
        r"image of 8x8 pixels is too small",
    ),
    "frame model: source smaller than the frame": (
        lambda sp: tensor_request("cam_n_frame", _frame((64, 64), (32, 32))),
        OK,  # boxes scaled down: a client's own choice of source, nothing read out of range
        r"^OK",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_to_a_raw_model_or_step(triton_server, reliability, case):
    build, code, pattern = CASES[case]
    check_case(triton_server.url, case, build(triton_server.specs), code, pattern, reliability)


@pytest.mark.parametrize(
    "rpc, name",
    [
        ("ModelConfig", "../cam_n"),
        ("ModelConfig", "cam_n/../perception"),
        ("ModelMetadata", ""),
        ("ModelMetadata", "x" * 100_000),
        ("ModelReady", "/etc/passwd"),
    ],
)
def test_bad_model_names_to_the_metadata_rpcs(triton_server, reliability, rpc, name):
    request_type = {
        "ModelConfig": service_pb2.ModelConfigRequest,
        "ModelMetadata": service_pb2.ModelMetadataRequest,
        "ModelReady": service_pb2.ModelReadyRequest,
    }[rpc]
    with channel(triton_server.url) as ch:
        call = getattr(service_pb2_grpc.GRPCInferenceServiceStub(ch), rpc)
        start = time.perf_counter()
        try:
            reply = call(request_type(name=name), timeout=10)
            code, text = grpc.StatusCode.OK, str(reply).strip()
        except grpc.RpcError as exc:
            code, text = exc.code(), exc.details() or ""
        seconds = time.perf_counter() - start
    state = server_state(triton_server.url, ("cam_n",))
    shown = name if len(name) < 40 else f"{name[:10]}... ({len(name)} chars)"
    reliability(
        "bad input",
        f"{rpc} of {shown!r}",
        f"{rpc}(name={shown!r})",
        f"{code.name}: {text[:120]}",
        seconds,
        state,
    )
    if rpc == "ModelReady":
        assert code == grpc.StatusCode.OK and text in ("", "ready: false"), text  # not ready, no file read
    else:
        # a 100 kB name: the error trailer echoing it exceeds gRPC's 16 kB metadata limit
        assert code in (NOT_FOUND, INVALID, grpc.StatusCode.RESOURCE_EXHAUSTED), f"{code}: {text}"
    assert state == "live, ready"
