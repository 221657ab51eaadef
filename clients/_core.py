"""What the sync and asyncio clients share: model discovery, request building, output parsing.

Only the I/O differs between the two clients; everything here is plain numpy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from clients import codec
from clients.errors import RequestTooLargeError
from clients.options import ClientOptions
from clients.results import PerceptionResult
from serving import spec as S
from serving.errors import MissingDependencyError, SpecError
from serving.letterbox import Letterbox
from serving.spec import SPEC_KEY, ModelSpec

log = logging.getLogger(__name__)

REQUEST_OVERHEAD_BYTES = 4096  # protobuf framing, names and parameters of a request, generously


def import_grpc():
    try:
        import tritonclient.grpc as grpcclient
    except ImportError as exc:
        raise MissingDependencyError("tritonclient[grpc]", "client") from exc
    return grpcclient


def import_grpc_aio():
    try:
        import tritonclient.grpc.aio as aioclient
    except ImportError as exc:
        raise MissingDependencyError("tritonclient[grpc]", "client") from exc
    return aioclient


def triton_client(options: ClientOptions, grpc_module=None):
    """tritonclient's gRPC client for ``options.url``: TLS when ``options.tls``, the channel
    arguments of :func:`channel_args`, and ``options.headers`` sent with every call (e.g. the admin
    key of a server whose statistics, model-config and shared-memory protocols are restricted).
    ``grpc_module``: :func:`import_grpc_aio`'s for the asyncio client (default: the sync one)."""
    tls = options.tls
    client = (grpc_module or import_grpc()).InferenceServerClient(
        options.url, ssl=tls is not None, channel_args=channel_args(options), **(tls.paths() if tls else {})
    )
    return _WithHeaders(client, dict(options.headers)) if options.headers else client


class _WithHeaders:
    """A tritonclient client (sync or asyncio) whose every RPC method gets ``headers`` (each takes
    that argument)."""

    def __init__(self, client, headers: dict[str, str]) -> None:
        self._client, self._headers = client, headers

    def __getattr__(self, name: str):
        import functools
        import inspect

        attr = getattr(self._client, name)
        if callable(attr) and "headers" in inspect.signature(attr).parameters:
            attr = functools.partial(attr, headers=self._headers)
            setattr(self, name, attr)  # found here from now on: signatures are read once
        return attr


def channel_args(options: ClientOptions) -> list[tuple[str, int | str]]:
    """The gRPC channel arguments of both clients: tritonclient's defaults (message sizes; keepalive
    off, so a dead peer is found by each call's deadline: pings would need the server's ping policy
    relaxed), the load-balancing policy (one of clients.options.LB_POLICIES), and a reconnect
    backoff no longer than the retry policy's first wait.

    tritonclient passes ``channel_args`` to the channel *instead of* its defaults (message size
    limits, keepalive), so those are rebuilt from tritonclient's own constants, not copied. gRPC's
    own reconnect backoff runs from 1 s up to 120 s: measured (tests/reliability/test_faults_network.py),
    after 0.5 s of refused connections a 3-attempt policy failed in 2 of 3 runs against a server that
    was back, the channel still waiting."""
    grpcclient = import_grpc()
    keepalive = grpcclient.KeepAliveOptions()
    reconnect_ms = max(100, int(options.retry.base_delay_s * 1000))
    return [
        ("grpc.max_send_message_length", grpcclient.MAX_GRPC_MESSAGE_SIZE),
        ("grpc.max_receive_message_length", grpcclient.MAX_GRPC_MESSAGE_SIZE),
        ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", int(keepalive.keepalive_permit_without_calls)),
        ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
        # never longer than the policy's first wait: every retry finds a fresh connection attempt
        ("grpc.initial_reconnect_backoff_ms", reconnect_ms),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", reconnect_ms),
        ("grpc.lb_policy_name", options.lb_policy),
    ]


@dataclass(frozen=True)
class ModelInfo:
    """What the client needs to know of a served model, read once from its config."""

    name: str
    max_batch_size: int
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    spec: ModelSpec
    steps: tuple[str, ...] = ()  # models an ensemble calls
    # the frame model among an ensemble's steps: a raw frame of a camera network goes there directly
    # (one model, no decode step); None for a fusion pipeline, whose raw frames need its projection
    frame_model: str | None = None

    @property
    def raw(self) -> bool:
        """A raw network (it takes the letterboxed ``images``): requests to it need
        ``ClientOptions(raw=True)``, the caller letterboxes and decodes."""
        return S.IMAGES in self.inputs


def config_parameters(config: dict) -> dict[str, str]:
    return {k: v.get("string_value", "") for k, v in (config.get("parameters") or {}).items()}


def ensemble_steps(config: dict) -> tuple[str, ...]:
    steps = (config.get("ensemble_scheduling") or {}).get("step") or []
    return tuple(step["model_name"] for step in steps if "model_name" in step)


def model_info_from_configs(name: str, configs: dict[str, dict]) -> ModelInfo:
    """Build ModelInfo from the JSON configs of the model and (for an ensemble) its steps."""
    config = configs[name]
    spec = codec.spec_from_parameters(config_parameters(config))
    steps = ensemble_steps(config)
    for step in steps:
        if spec is None and step in configs:
            spec = codec.spec_from_parameters(config_parameters(configs[step]))
    if spec is None:
        raise SpecError(
            f"model {name!r} carries no perception spec (config parameter {SPEC_KEY!r}, "
            "on the model or an ensemble step): cannot decode its outputs"
        )
    frame_model = None
    if not spec.fusion:
        takes_frames = [s for s in steps if S.SOURCE_HW in _input_names(configs.get(s, {}))]
        frame_model = takes_frames[0] if takes_frames else None
    return ModelInfo(
        name=name,
        max_batch_size=int(config.get("max_batch_size", 0) or 0),
        inputs=tuple(t["name"] for t in config.get("input", [])),
        outputs=tuple(t["name"] for t in config.get("output", [])),
        spec=spec,
        steps=steps,
        frame_model=frame_model,
    )


def _input_names(config: dict) -> set[str]:
    return {t["name"] for t in config.get("input", [])}


def fetch_model_info(get_config: Callable[[str], dict], name: str) -> ModelInfo:
    """ModelInfo of the served model ``name``, from its config and its ensemble steps' configs.

    ``get_config(model)`` returns one model's config as tritonclient gives it with ``as_json=True``
    (its ``"config"`` entry); the caller brings its own deadline, retries and error mapping.
    """
    configs = {name: get_config(name)}
    for step in ensemble_steps(configs[name]):
        configs[step] = get_config(step)
    return model_info_from_configs(name, configs)


@dataclass
class Prepared:
    """One request ready to send: named arrays (batch axis added) and how to read the reply."""

    arrays: dict[str, np.ndarray]
    outputs: tuple[str, ...]
    letterbox: Letterbox | None  # raw mode: the client's letterbox
    source_hw: tuple[int, int] | None
    model: str = ""  # the model to call: the one asked, or its pipeline's frame model

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays.values()) + REQUEST_OVERHEAD_BYTES


def prepare(
    info: ModelInfo,
    options: ClientOptions,
    image: bytes | None,
    frame: np.ndarray | None,
    points: np.ndarray | None,
    projection: np.ndarray | None,
    route: bool = True,
) -> Prepared:
    """One request for ``info``'s model. ``route``: a raw frame for a camera pipeline goes to its
    frame model (one model instead of two; the load test sends what it was told to, route=False)."""
    if (image is None) == (frame is None):
        raise SpecError("pass exactly one of image= (encoded bytes) or frame= (HxWx3 uint8 RGB array)")
    spec = info.spec
    lidar = codec.check_lidar(spec, points, projection)
    if options.raw:
        rgb = codec.to_rgb(image, frame)
        arrays, lb = codec.network_inputs(spec, rgb, lidar)
        prepared = Prepared(arrays, info.outputs, lb, codec.hw(rgb), info.name)
    else:
        arrays = {}
        source_hw: tuple[int, int] | None = None
        model = info.name
        if frame is not None and route and info.frame_model is not None:
            model = info.frame_model
            rgb = codec.to_rgb(None, frame)
            source_hw = codec.hw(rgb)
            arrays[S.IMAGE], arrays[S.SOURCE_HW] = rgb, np.array(source_hw, np.int32)
        elif image is not None and S.IMAGE_ENCODED in info.inputs:
            if not image:
                raise SpecError("image is empty (0 bytes)")
            arrays[S.IMAGE_ENCODED] = np.frombuffer(image, dtype=np.uint8)
        else:
            rgb = codec.to_rgb(image, frame)
            source_hw = codec.hw(rgb)
            if S.IMAGE in info.inputs:
                arrays[S.IMAGE] = rgb
                if S.SOURCE_HW in info.inputs:  # a frame model, asked by name
                    arrays[S.SOURCE_HW] = np.array(source_hw, np.int32)
            else:  # a pipeline that only takes encoded images
                ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                arrays[S.IMAGE_ENCODED] = png.reshape(-1)
        if lidar is not None:
            arrays[S.POINTS], arrays[S.PROJECTION] = lidar
        if info.max_batch_size > 0:
            arrays = {k: v[None] for k, v in arrays.items()}
        prepared = Prepared(arrays, info.outputs, None, source_hw, model)
        if S.LETTERBOX not in info.outputs and source_hw is None:
            prepared.source_hw = codec.hw(codec.decode_image(image or b""))
    if prepared.nbytes > options.max_request_bytes:
        raise RequestTooLargeError(
            f"request of {prepared.nbytes} bytes exceeds the client limit of {options.max_request_bytes} "
            "bytes (max_request_bytes): send a smaller image or raise the limit"
        )
    return prepared


def parse(info: ModelInfo, options: ClientOptions, prepared: Prepared, outputs: dict) -> PerceptionResult:
    """Named output arrays of one reply -> PerceptionResult (batch axis removed here)."""
    if info.max_batch_size > 0:
        outputs = {k: v[0] for k, v in outputs.items()}
    if options.raw:
        assert prepared.letterbox is not None  # set by prepare() in raw mode
        return codec.result_from_network(info.spec, outputs, prepared.letterbox, options.resize_to_source)
    return codec.result_from_pipeline(
        info.spec, outputs, prepared.source_hw or (0, 0), options.resize_to_source
    )


def wanted_outputs(info: ModelInfo) -> tuple[str, ...]:
    return info.outputs
