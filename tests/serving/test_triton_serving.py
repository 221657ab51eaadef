"""Against the real tritonserver (session fixture `triton_server` in tests/conftest.py).

The served models are the exported cam-n and fusion-n at a reduced input size; the reference is
the same ONNX file run in-process with ONNX Runtime and the same letterbox geometry.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import cv2
import numpy as np
import pytest

from serving import spec as S
from serving.letterbox import Letterbox, letterbox_image
from serving.lidar import project_to_depth_image
from serving.model_config import network_model_name, preprocess_model_name

pytestmark = pytest.mark.triton

grpcclient = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException, np_to_triton_dtype  # noqa: E402

SOURCE_HW = (360, 640)  # world scenes; letterboxed into the served 192x320 networks (scale 0.5)


# --- helpers ----------------------------------------------------------------------------------
def infer(url: str, model: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    client = grpcclient.InferenceServerClient(url)
    try:
        tensors = []
        for name, arr in inputs.items():
            t = grpcclient.InferInput(name, list(arr.shape), np_to_triton_dtype(arr.dtype))
            t.set_data_from_numpy(arr)
            tensors.append(t)
        result = client.infer(model, tensors, client_timeout=120)
        return {o.name: result.as_numpy(o.name) for o in result.get_response().outputs}
    finally:
        client.close()


def stats(url: str, model: str) -> tuple[int, int]:
    client = grpcclient.InferenceServerClient(url)
    try:
        s = client.get_inference_statistics(model).model_stats[0]
        return int(s.inference_count), int(s.execution_count)
    finally:
        client.close()


def concurrently(fns: list[Callable[[], object]]) -> list[object]:
    """Run the calls at once (a barrier releases them together); exceptions are returned as values."""
    barrier = threading.Barrier(len(fns))
    out: list[object] = [None] * len(fns)

    def run(i: int) -> None:
        barrier.wait()
        try:
            out[i] = fns[i]()
        except Exception as exc:
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    return out


def ort_session(path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # as served (intra_op_threads=1 in the test repository)
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def scenes(seeds, hw=SOURCE_HW, lidar=False):
    from world import render_scene

    return [render_scene(seed, hw=hw, lidar=lidar) for seed in seeds]


def reference(spec, session, scene, resize_to_source=True) -> dict[str, np.ndarray]:
    """In-process pipeline: letterbox -> ONNX Runtime -> outputs in source terms."""
    boxed, lb = letterbox_image(
        scene.image, spec.input_hw, spec.letterbox.pad_value, spec.letterbox.allow_upscale
    )
    feeds = {S.IMAGES: boxed.transpose(2, 0, 1)[None].copy()}
    if spec.fusion:
        feeds[S.LIDAR_DEPTH] = project_to_depth_image(scene.points, scene.projection, spec.input_hw, lb)[None]
    names = [t.name for t in spec.network_outputs]
    raw = dict(zip(names, (v[0] for v in session.run(names, feeds)), strict=True))
    n = int(raw[S.NUM_DETS])
    boxes = np.zeros_like(raw[S.DET_BOXES])
    boxes[:n] = lb.boxes_to_source(raw[S.DET_BOXES][:n])
    return {
        S.NUM_DETS: np.array([n]),
        S.DET_BOXES: boxes,
        S.DET_SCORES: raw[S.DET_SCORES],
        S.DET_CLASSES: raw[S.DET_CLASSES],
        S.SEG_MASK: lb.crop_dense(raw[S.SEG_MASK], 1, resize_to_source),
        S.DEPTH: lb.crop_dense(raw[S.DEPTH], spec.depth_stride, resize_to_source),
    }


def pipeline_inputs(scene, fusion=False, resize=True, encoded: bytes | None = None) -> dict[str, np.ndarray]:
    if encoded is not None:
        inputs = {S.IMAGE_ENCODED: np.frombuffer(encoded, np.uint8)[None]}
    else:
        inputs = {S.IMAGE: scene.image[None]}
    inputs[S.RESIZE_TO_SOURCE] = np.array([[resize]])
    if fusion:
        inputs[S.POINTS] = scene.points[None]
        inputs[S.PROJECTION] = scene.projection[None]
    return inputs


def first(outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Drop the batch axis of one request's outputs."""
    return {k: v[0] for k, v in outputs.items()}


def check_not_empty(outputs: dict[str, np.ndarray]) -> None:
    # numpy 2 under the wheel's stub returns outputs with zero bytes, silently (DESIGN.md)
    for name, arr in outputs.items():
        assert arr.size > 0 and arr.nbytes == arr.size * arr.itemsize, f"{name} came back empty: {arr.shape}"


# --- the raw network --------------------------------------------------------------------------
@pytest.mark.parametrize("network", ["cam-n", "fusion-n"])
def test_served_raw_network_equals_in_process_onnxruntime(triton_server, network):
    spec = triton_server.specs[network]
    rng = np.random.default_rng(7)
    feeds = {S.IMAGES: rng.integers(0, 256, (3, 3, *spec.input_hw), dtype=np.uint8)}
    if spec.fusion:
        sparse = rng.random((3, 1, *spec.input_hw)) < 0.05
        feeds[S.LIDAR_DEPTH] = np.where(sparse, rng.uniform(2, 80, sparse.shape), 0).astype(np.float32)
    served = infer(triton_server.url, network_model_name(spec), feeds)
    check_not_empty(served)
    names = [t.name for t in spec.network_outputs]
    local = dict(zip(names, ort_session(triton_server.onnx[network]).run(names, feeds), strict=True))
    for t in spec.network_outputs:
        got = served[t.name].reshape(local[t.name].shape)
        assert got.dtype == np.dtype(t.dtype), t.name
        if t.dtype in ("uint8", "int32"):
            np.testing.assert_array_equal(got, local[t.name], err_msg=t.name)
        else:
            np.testing.assert_allclose(
                got.astype(np.float64), local[t.name].astype(np.float64), atol=1e-5, rtol=0
            )


# --- the ensembles ----------------------------------------------------------------------------
def _check_against_reference(served, ref, source_hw):
    n = int(served[S.NUM_DETS].reshape(-1)[0])
    assert n == int(ref[S.NUM_DETS][0])
    np.testing.assert_allclose(served[S.DET_BOXES], ref[S.DET_BOXES], atol=1e-4)
    boxes = served[S.DET_BOXES][:n]
    assert (boxes[:, [0, 2]] <= source_hw[1]).all() and (boxes[:, [1, 3]] <= source_hw[0]).all()
    assert (boxes >= 0).all() and (served[S.DET_BOXES][n:] == 0).all()
    np.testing.assert_array_equal(served[S.SEG_MASK], ref[S.SEG_MASK])
    np.testing.assert_array_equal(served[S.DEPTH], ref[S.DEPTH])


@pytest.mark.parametrize(
    ("network", "ensemble"), [("cam-n", S.ENSEMBLE_CAMERA), ("fusion-n", S.ENSEMBLE_FUSION)]
)
def test_ensemble_metrics_equal_in_process_with_boxes_in_source_pixels(triton_server, network, ensemble):
    from exporters.evaluation import evaluate

    spec = triton_server.specs[network]
    session = ort_session(triton_server.onnx[network])
    world = scenes(range(100, 106), lidar=spec.fusion)
    served_all, ref_all = [], []
    for scene in world:
        served = first(infer(triton_server.url, ensemble, pipeline_inputs(scene, spec.fusion)))
        check_not_empty(served)
        ref = reference(spec, session, scene)
        assert served[S.SEG_MASK].shape == SOURCE_HW and served[S.DEPTH].shape == SOURCE_HW
        _check_against_reference(served, ref, SOURCE_HW)
        n = int(served[S.NUM_DETS].reshape(-1)[0])
        names = [spec.det_classes[c].encode() for c in served[S.DET_CLASSES][:n]]
        assert list(served[S.CLASS_NAMES][:n]) == names
        np.testing.assert_allclose(served[S.LETTERBOX], Letterbox.fit(SOURCE_HW, spec.input_hw).to_tensor())
        served_all.append(served)
        ref_all.append(ref)
    assert evaluate(served_all, world, spec) == evaluate(ref_all, world, spec)


def test_dense_maps_stay_at_letterbox_resolution_unless_asked(triton_server):
    spec = triton_server.specs["cam-n"]
    scene = scenes([7])[0]
    served = first(infer(triton_server.url, S.ENSEMBLE_CAMERA, pipeline_inputs(scene, resize=False)))
    ref = reference(spec, ort_session(triton_server.onnx["cam-n"]), scene, resize_to_source=False)
    assert served[S.SEG_MASK].shape == (180, 320) and served[S.DEPTH].shape == (90, 160)
    _check_against_reference(served, ref, SOURCE_HW)
    no_flag = {S.IMAGE: scene.image[None]}  # resize_to_source is optional: default False
    np.testing.assert_array_equal(
        first(infer(triton_server.url, S.ENSEMBLE_CAMERA, no_flag))[S.SEG_MASK], ref[S.SEG_MASK]
    )


def test_720p_jpeg_and_raw_frame_give_the_same_detections(triton_server):
    """JPEG quality 95 of a 1280x720 frame vs the frame itself. Bounds (JPEG loss): every raw
    detection scoring >= 0.1 above the threshold has a JPEG detection of the same class with IoU
    >= 0.8 and a score within 0.1; segmentation agrees on >= 98 % of pixels; depth's median
    relative difference <= 2 %."""
    spec = triton_server.specs["cam-n"]
    scene = scenes([11], hw=(720, 1280))[0]
    ok, jpeg = cv2.imencode(
        ".jpg", cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95]
    )
    assert ok
    raw = first(infer(triton_server.url, S.ENSEMBLE_CAMERA, pipeline_inputs(scene)))
    enc = first(infer(triton_server.url, S.ENSEMBLE_CAMERA, pipeline_inputs(scene, encoded=jpeg.tobytes())))
    assert raw[S.SEG_MASK].shape == enc[S.SEG_MASK].shape == (720, 1280)
    np.testing.assert_array_equal(raw[S.LETTERBOX], enc[S.LETTERBOX])
    from exporters.evaluation.detection import box_iou

    n_raw, n_enc = int(raw[S.NUM_DETS].reshape(-1)[0]), int(enc[S.NUM_DETS].reshape(-1)[0])
    strong = raw[S.DET_SCORES][:n_raw] >= spec.score_threshold + 0.1
    if strong.any() and n_enc:
        iou = box_iou(raw[S.DET_BOXES][:n_raw][strong], enc[S.DET_BOXES][:n_enc])
        same_class = raw[S.DET_CLASSES][:n_raw][strong][:, None] == enc[S.DET_CLASSES][:n_enc][None]
        close = np.abs(raw[S.DET_SCORES][:n_raw][strong][:, None] - enc[S.DET_SCORES][:n_enc][None]) <= 0.1
        assert ((iou >= 0.8) & same_class & close).any(axis=1).all()
    else:
        assert not strong.any(), "strong raw detections but none from the JPEG"
    assert (raw[S.SEG_MASK] == enc[S.SEG_MASK]).mean() >= 0.98
    d_raw, d_enc = raw[S.DEPTH].astype(np.float32), enc[S.DEPTH].astype(np.float32)
    assert np.median(np.abs(d_raw - d_enc) / np.maximum(d_raw, 1e-3)) <= 0.02


# --- dynamic batching -------------------------------------------------------------------------
def test_dynamic_batching_under_8_concurrent_clients_keeps_results(triton_server):
    spec = triton_server.specs["cam-n"]
    world = scenes(range(200, 208))
    alone = [first(infer(triton_server.url, S.ENSEMBLE_CAMERA, pipeline_inputs(s))) for s in world]
    net = network_model_name(spec)
    before = stats(triton_server.url, net)
    rounds = 3
    calls = [
        (
            lambda s=s: [
                first(infer(triton_server.url, S.ENSEMBLE_CAMERA, pipeline_inputs(s))) for _ in range(rounds)
            ]
        )
        for s in world
    ]
    results = concurrently(calls)
    after = stats(triton_server.url, net)
    inferences, executions = after[0] - before[0], after[1] - before[1]
    assert inferences == len(world) * rounds
    assert inferences > executions and inferences / executions >= 2.0, (inferences, executions)
    for one, many in zip(alone, results, strict=True):
        assert not isinstance(many, Exception), many
        for got in many:  # type: ignore[union-attr]
            for name in (S.NUM_DETS, S.DET_CLASSES, S.SEG_MASK):
                np.testing.assert_array_equal(got[name], one[name], err_msg=name)
            for name in (S.DET_BOXES, S.DET_SCORES, S.DEPTH):
                np.testing.assert_allclose(
                    got[name].astype(np.float64), one[name].astype(np.float64), atol=1e-5
                )


@pytest.fixture
def fusion_server_with_preprocess_delay(exported_onnx, tmp_path):
    """fusion-n alone, its preprocess waiting up to 0.5 s to fill a batch: concurrent requests then
    batch whatever this machine's speed (with the default 0 delay an idle preprocess takes each
    request as it comes, so whether they batch would depend on timing)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    from serving.ensemble import FrameLimits
    from serving.launcher import ServerOptions, TritonServer
    from serving.model_config import RepositoryOptions
    from serving.onnx_meta import read_spec
    from serving.repository import build_repository
    from tests.conftest import TEST_MAX_PIXELS

    repo = tmp_path / "repo"
    options = RepositoryOptions(
        limits=FrameLimits(max_pixels=TEST_MAX_PIXELS), network_instances=1, intra_op_threads=1
    )
    build_repository([exported_onnx["fusion-n"]], repo, options)
    spec = read_spec(exported_onnx["fusion-n"])
    config_path = repo / preprocess_model_name(spec) / "config.pbtxt"
    config = text_format.Parse(config_path.read_text(), model_config_pb2.ModelConfig())
    config.dynamic_batching.max_queue_delay_microseconds = 500_000
    config_path.write_text(text_format.MessageToString(config))
    with TritonServer(ServerOptions(repo)) as server:
        yield server, spec


def test_fusion_requests_with_different_point_counts_batch_together(fusion_server_with_preprocess_delay):
    server, spec = fusion_server_with_preprocess_delay
    url = server.grpc_url
    world = scenes(range(300, 306), lidar=True)
    rng = np.random.default_rng(0)
    for i, scene in enumerate(world):  # 6 different point counts, one of them empty
        keep = rng.permutation(len(scene.points))[: int(len(scene.points) * i / 5)]
        scene.points = scene.points[np.sort(keep)]
    counts = {len(s.points) for s in world}
    assert len(counts) == len(world) and 0 in counts
    alone = [first(infer(url, S.ENSEMBLE_FUSION, pipeline_inputs(s, True))) for s in world]
    pre, net = preprocess_model_name(spec), network_model_name(spec)
    before_pre, before_net = stats(url, pre), stats(url, net)
    together = concurrently(
        [lambda s=s: first(infer(url, S.ENSEMBLE_FUSION, pipeline_inputs(s, True))) for s in world]
    )
    after_pre, after_net = stats(url, pre), stats(url, net)
    # ragged points batch in preprocess, and the network batches the projected depth images
    assert after_pre[0] - before_pre[0] == len(world)
    assert after_pre[1] - before_pre[1] <= 2, after_pre[1] - before_pre[1]
    assert after_net[0] - before_net[0] > after_net[1] - before_net[1]
    for one, got in zip(alone, together, strict=True):
        assert not isinstance(got, Exception), got
        for name in (S.NUM_DETS, S.DET_CLASSES, S.SEG_MASK):
            np.testing.assert_array_equal(got[name], one[name], err_msg=name)  # type: ignore[index]
        np.testing.assert_allclose(
            got[S.DEPTH].astype(np.float64), one[S.DEPTH].astype(np.float64), atol=1e-5
        )  # type: ignore[index]


def _jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def test_each_bad_request_gets_its_own_clear_error_while_the_batch_succeeds(triton_server):
    from tests.conftest import TEST_MAX_PIXELS

    scene = scenes([400], lidar=True)[0]
    good_jpeg = _jpeg(scene.image)
    big = np.zeros((2000, 2500, 3), np.uint8)  # 5 Mpx > TEST_MAX_PIXELS, a few kB as JPEG
    assert big.shape[0] * big.shape[1] > TEST_MAX_PIXELS
    rng = np.random.default_rng(3)
    bad_points = scene.points[:100].copy()
    bad_points[5, 1] = np.nan
    bad_points[7, 2] = np.inf
    cam, fusion = S.ENSEMBLE_CAMERA, S.ENSEMBLE_FUSION
    bad = {
        "wrong dtype": (cam, {S.IMAGE: scene.image[None].astype(np.float32)}, r"unexpected datatype|FP32"),
        "wrong rank": (cam, {S.IMAGE: scene.image[None, :, :, 0].copy()}, r"unexpected shape"),
        "empty tensor": (cam, {S.IMAGE: np.zeros((1, 0, 0, 3), np.uint8)}, r"empty"),
        "truncated jpeg": (
            cam,
            {S.IMAGE_ENCODED: np.frombuffer(good_jpeg[: len(good_jpeg) // 2], np.uint8)[None]},
            r"truncated",
        ),
        "random bytes": (
            cam,
            {S.IMAGE_ENCODED: rng.integers(0, 256, (1, 5000), dtype=np.uint8)},
            r"not a JPEG or PNG",
        ),
        "too many pixels": (
            cam,
            {S.IMAGE_ENCODED: np.frombuffer(_jpeg(big), np.uint8)[None]},
            rf"2000x2500 = 5000000 pixels exceeds the limit of {TEST_MAX_PIXELS}",
        ),
        "1x1 image": (cam, {S.IMAGE: np.zeros((1, 1, 1, 3), np.uint8)}, r"1x1 pixels is too small"),
        "nan points": (
            fusion,
            {S.IMAGE: scene.image[None], S.POINTS: bad_points[None], S.PROJECTION: scene.projection[None]},
            r"NaN or Inf",
        ),
        "projection shape": (
            fusion,
            {
                S.IMAGE: scene.image[None],
                S.POINTS: scene.points[None],
                S.PROJECTION: np.eye(3, dtype=np.float32)[None],
            },
            r"unexpected shape for input 'projection'",
        ),
    }
    good = [
        (cam, pipeline_inputs(scene)),
        (cam, {S.IMAGE_ENCODED: np.frombuffer(good_jpeg, np.uint8)[None]}),
        (fusion, pipeline_inputs(scene, fusion=True)),
    ]
    expected_good = [first(infer(triton_server.url, m, i)) for m, i in good]
    calls = [lambda m=m, i=i: first(infer(triton_server.url, m, i)) for m, i, _ in bad.values()]
    calls += [lambda m=m, i=i: first(infer(triton_server.url, m, i)) for m, i in good] * 2
    results = concurrently(calls)
    for (label, (_, _, pattern)), got in zip(bad.items(), results[: len(bad)], strict=True):
        assert isinstance(got, InferenceServerException), f"{label}: no error"
        assert got.status() == "StatusCode.INVALID_ARGUMENT", f"{label}: {got.status()} {got.message()}"
        assert __import__("re").search(pattern, got.message()), f"{label}: {got.message()}"
    for i, got in enumerate(results[len(bad) :]):
        assert not isinstance(got, Exception), got
        want = expected_good[i % len(good)]
        np.testing.assert_array_equal(got[S.SEG_MASK], want[S.SEG_MASK])  # type: ignore[index]
        np.testing.assert_array_equal(got[S.NUM_DETS], want[S.NUM_DETS])  # type: ignore[index]
    client = grpcclient.InferenceServerClient(triton_server.url)
    try:
        assert client.is_server_ready() and client.is_server_live()
        for model in (cam, fusion, "cam_n", "fusion_n"):
            assert client.is_model_ready(model), model
    finally:
        client.close()
