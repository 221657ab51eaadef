"""Raw gRPC requests for the bad-input, fuzz and hardening tests: ModelInferRequest messages built by
hand (service_pb2), so that a test can send what tritonclient would refuse to build (byte sizes not
matching the shape, duplicate outputs, unknown dtypes), and the server's state read after each case.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import grpc
import numpy as np
from tritonclient.grpc import InferResult, service_pb2, service_pb2_grpc
from tritonclient.utils import np_to_triton_dtype

from serving import spec as S
from serving.stubs import server_rss_bytes

RPC_TIMEOUT_S = 60.0
INFER = "/inference.GRPCInferenceService/ModelInfer"


def tensor_request(
    model: str,
    inputs: dict[str, np.ndarray],
    outputs: Iterable[str] = (),
    version: str = "",
) -> service_pb2.ModelInferRequest:
    """A ModelInferRequest with each array as raw little-endian bytes (what tritonclient sends)."""
    request = service_pb2.ModelInferRequest(model_name=model, model_version=version)
    for name, arr in inputs.items():
        t = request.inputs.add(name=name, datatype=np_to_triton_dtype(arr.dtype))
        t.shape.extend(arr.shape)
        request.raw_input_contents.append(np.ascontiguousarray(arr).tobytes())
    for name in outputs:
        request.outputs.add(name=name)
    return request


@dataclass(frozen=True)
class Reply:
    """What came back for one RPC: a gRPC status code and message, or the outputs."""

    code: grpc.StatusCode
    message: str
    outputs: dict[str, np.ndarray] | None
    seconds: float

    def summary(self) -> str:
        if self.outputs is not None:
            return f"OK, outputs {', '.join(sorted(self.outputs))}"
        text = self.message if len(self.message) <= 220 else self.message[:217] + "..."
        return f"{self.code.name}: {text}"


def channel(url: str) -> grpc.Channel:
    # as tritonclient opens its channels: no message size limit on either side
    opts = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    return grpc.insecure_channel(url, options=opts)


def send(url: str, request: service_pb2.ModelInferRequest, metadata=None) -> Reply:
    with channel(url) as ch:
        return send_on(service_pb2_grpc.GRPCInferenceServiceStub(ch), request, metadata)


def send_on(stub, request, metadata=None) -> Reply:
    start = time.perf_counter()
    try:
        response = stub.ModelInfer(request, timeout=RPC_TIMEOUT_S, metadata=metadata)
    except grpc.RpcError as exc:
        return Reply(exc.code(), exc.details() or "", None, time.perf_counter() - start)
    result = InferResult(response)
    outputs = {o.name: result.as_numpy(o.name) for o in response.outputs}
    return Reply(grpc.StatusCode.OK, "", outputs, time.perf_counter() - start)


def server_state(url: str, models: Iterable[str]) -> str:
    """'live, ready' and the models not ready, read from the server (health and model-ready RPCs)."""
    with channel(url) as ch:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(ch)
        live = stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=10).live
        ready = stub.ServerReady(service_pb2.ServerReadyRequest(), timeout=10).ready
        not_ready = [
            m for m in models if not stub.ModelReady(service_pb2.ModelReadyRequest(name=m), timeout=10).ready
        ]
    state = f"{'live' if live else 'NOT LIVE'}, {'ready' if ready else 'NOT READY'}"
    return state + (f"; not ready: {', '.join(not_ready)}" if not_ready else "")


def same_answer(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    """A batch-mate's answer equals the same request's answer alone: integer heads exactly, floats
    to what a different batch composition may change in ONNX Runtime's last bits."""
    assert set(got) == set(want), (sorted(got), sorted(want))
    for name, w in want.items():
        g = got[name]
        assert g.shape == w.shape, (name, g.shape, w.shape)
        if w.dtype.kind in "iub" or w.dtype == object:
            np.testing.assert_array_equal(g, w, err_msg=name)
        else:
            np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=1e-3, atol=1e-3)


def png_header(h: int, w: int) -> bytes:
    """The first 33 bytes of a PNG of h x w (signature + IHDR): a decompression bomb's header."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


def jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def encoded(data: bytes) -> dict[str, np.ndarray]:
    return {S.IMAGE_ENCODED: np.frombuffer(data, np.uint8)[None]}


# --- server process memory --------------------------------------------------------------------
def total_rss_mib(pid: int) -> float:
    """tritonserver's RSS plus its live python-backend stubs' (serving.stubs reads them from /proc)."""
    return sum(server_rss_bytes(pid).values()) / 2**20


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def describe(request: service_pb2.ModelInferRequest, note: str = "") -> str:
    """One line: model, each input's dtype and shape, the requested outputs, the bytes sent."""
    inputs = ", ".join(f"{t.name} {t.datatype}{list(t.shape)}" for t in request.inputs) or "no inputs"
    outs = [o.name for o in request.outputs]
    shown = f"; {len(outs)} outputs asked" if len(outs) > 3 else (f"; outputs {outs}" if outs else "")
    size = request.ByteSize()
    version = f" v{request.model_version}" if request.model_version else ""
    return f"{request.model_name}{version}: {inputs}{shown} ({size} B){'; ' + note if note else ''}"


# --- one case: the bad request with good batch-mates -----------------------------------------
ENSEMBLE_MODELS = (S.ENSEMBLE_CAMERA, S.ENSEMBLE_FUSION, "cam_n", "fusion_n", "cam_n_decode", "cam_n_frame")
_GOOD: dict[str, tuple[dict, dict]] = {}


def good_batch_mates(url: str) -> tuple[dict, dict]:
    """A good camera and fusion request (world scene 400) and their answers when sent alone."""
    if url not in _GOOD:
        from tests.serving.triton_helpers import pipeline_inputs, scenes

        scene = scenes([400], lidar=True)[0]
        good = {
            S.ENSEMBLE_CAMERA: tensor_request(S.ENSEMBLE_CAMERA, pipeline_inputs(scene)),
            S.ENSEMBLE_FUSION: tensor_request(S.ENSEMBLE_FUSION, pipeline_inputs(scene, fusion=True)),
        }
        alone = {m: send(url, r) for m, r in good.items()}
        for m, reply in alone.items():
            assert reply.outputs is not None, f"{m}: {reply.summary()}"
        _GOOD[url] = good, {m: r.outputs for m, r in alone.items()}
    return _GOOD[url]


def check_case(url, case, request, code, pattern, reliability, section="bad input") -> Reply:
    """Send ``request`` together with the good batch-mates; its reply must have ``code`` and a message
    matching ``pattern``, the mates their answers alone, the server live and ready; one report row."""
    import re

    from tests.serving.triton_helpers import concurrently

    good, want = good_batch_mates(url)
    calls = [lambda: send(url, request)] + [lambda r=r: send(url, r) for r in good.values()]
    bad, *mates = concurrently(calls)
    assert isinstance(bad, Reply), bad
    state = server_state(url, ENSEMBLE_MODELS)
    reliability(section, case, describe(request), bad.summary(), bad.seconds, state)
    assert bad.code == code, f"{case}: {bad.summary()}"
    assert re.search(pattern, bad.message or bad.summary()), f"{case}: {bad.summary()}"
    assert bad.seconds < 10, f"{case}: answered after {bad.seconds:.1f}s"
    for model, mate in zip(good, mates, strict=True):
        assert isinstance(mate, Reply) and mate.outputs is not None, f"{model} batch-mate: {mate}"
        same_answer(mate.outputs, want[model])
    assert state == "live, ready", state
    return bad
