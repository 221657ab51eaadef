"""The load-test harness: pure parts here, a real sweep against the session's Triton server below."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from clients.loadtest.frames import Frame, folder_frames, load_frames
from clients.loadtest.options import LoadTestOptions, parse_concurrency
from clients.loadtest.payload import ModelInfo, build_payload
from clients.loadtest.runner import split_evenly
from clients.loadtest.stats import Latency, is_stable, window_of
from clients.options import TlsOptions
from serving import spec as S
from serving.errors import SpecError
from serving.security import ADMIN_HEADER, admin_headers


# --- options -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1:32:x2", (1, 2, 4, 8, 16, 32)),
        ("1:20:x3", (1, 3, 9)),
        ("1:8:+2", (1, 3, 5, 7)),
        ("1,2,8", (1, 2, 8)),
        ("4", (4,)),
    ],
)
def test_concurrency_ranges_and_lists_expand(text, expected):
    assert parse_concurrency(text) == expected


@pytest.mark.parametrize("text", ["0,1", "8:2:x2", "1:8:x1", "a,b", "", "1:8:+0"])
def test_bad_concurrency_is_one_clear_error(text):
    with pytest.raises(SpecError, match="concurrency"):
        parse_concurrency(text)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url": "localhost"}, "host:port"),
        ({"rate": -1.0}, "rate"),
        ({"rate": 5.0, "models": ("a", "b")}, "one model"),
        ({"arrivals": "bursty"}, "arrivals"),
        ({"stable_windows": 4, "max_windows": 3}, "stable_windows"),
        ({"tolerance": 1.5}, "tolerance"),
        ({"shared_memory": "cuda"}, "shared memory"),
        ({"slo_p99_ms": 0.0}, "SLO"),
        ({"encoding": "webp"}, "encoding"),
        ({"shared_memory": "system", "tls": TlsOptions(Path(__file__))}, "no sense with TLS"),
        ({"request_timeout_s": 0.0}, "request timeout must be > 0 s"),
    ],
)
def test_impossible_options_are_refused(kwargs, message):
    base = {"url": "127.0.0.1:8001", "models": ("cam_n",)}
    with pytest.raises(SpecError, match=message):
        LoadTestOptions(**{**base, **kwargs})


def test_the_results_json_names_headers_but_never_their_values():
    tls = TlsOptions(Path(__file__))
    key = admin_headers("k" * 20)
    options = LoadTestOptions(url="127.0.0.1:8001", models=("cam_n",), headers=key, tls=tls)
    assert options.connection.headers == ((ADMIN_HEADER, "k" * 20),)
    described = options.described()
    assert described["headers"] == [ADMIN_HEADER] and "k" * 20 not in json.dumps(described)
    assert described["tls"]["root_certificates"] == __file__


def test_threads_spread_evenly_over_at_most_the_workers():
    assert split_evenly(5, 2) == [3, 2]
    assert split_evenly(1, 4) == [1]
    assert split_evenly(8, 3) == [3, 3, 2]
    assert sum(split_evenly(32, 2)) == 32


# --- statistics ----------------------------------------------------------------------------------
def test_latency_percentiles_in_milliseconds():
    lat = Latency.of([i / 1000 for i in range(1, 101)])  # 1..100 ms
    assert lat.avg == pytest.approx(50.5)
    assert lat.p50 == pytest.approx(50.5)
    assert lat.p99 == pytest.approx(99.01)
    assert lat.max == pytest.approx(100.0)
    assert np.isnan(Latency.of([]).p99)


def test_stability_needs_throughput_and_p95_to_agree():
    steady = [window_of([0.010] * 100, 0, 1.0) for _ in range(3)]
    assert is_stable(steady, 3, 0.1)
    assert not is_stable(steady[:2], 3, 0.1)  # too few windows yet
    slower = steady[:2] + [window_of([0.010] * 70, 0, 1.0)]
    assert not is_stable(slower, 3, 0.1)  # throughput fell 30 %
    tail = steady[:2] + [window_of([0.010] * 90 + [0.050] * 10, 0, 1.0)]
    assert not is_stable(tail, 3, 0.1)  # same throughput, p95 five times higher
    assert not is_stable([window_of([], 5, 1.0)] * 3, 3, 0.1)  # nothing succeeded


# --- inputs --------------------------------------------------------------------------------------
def _info(text: str) -> ModelInfo:
    """The client library's description of a model whose config (as the server gives it, JSON)
    carries the fusion network's spec."""
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    from clients._core import model_info_from_configs

    config = text_format.Parse(text, model_config_pb2.ModelConfig())
    config.parameters[S.SPEC_KEY].string_value = S.ModelSpec("fusion-n", fusion=True).to_json()
    as_json = json_format.MessageToDict(config, preserving_proto_field_name=True)  # as tritonclient's
    return model_info_from_configs(config.name, {config.name: as_json})


RAW_FUSION = """
name: "fusion_n" max_batch_size: 8
input { name: "images" data_type: TYPE_UINT8 dims: [3, 384, 640] }
input { name: "lidar_depth" data_type: TYPE_FP32 dims: [1, 384, 640] }
"""

ENSEMBLE = """
name: "perception_fusion" platform: "ensemble" max_batch_size: 0
input { name: "image" data_type: TYPE_UINT8 dims: [-1, -1, 3] optional: true }
input { name: "image_encoded" data_type: TYPE_UINT8 dims: [-1] optional: true }
input { name: "points" data_type: TYPE_FP32 dims: [-1, 4] }
input { name: "projection" data_type: TYPE_FP32 dims: [3, 4] }
input { name: "resize_to_source" data_type: TYPE_BOOL dims: [1] optional: true }
ensemble_scheduling { step { model_name: "fusion_n_preprocess" model_version: -1 }
                      step { model_name: "fusion_n" model_version: -1 } }
"""


def _frame(h=720, w=1280, points=True) -> Frame:
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    if not points:
        return Frame(image)
    pts = np.array([[10.0, 0.0, 0.0, 0.5], [20.0, 1.0, 0.0, 0.2]], np.float32)
    # LiDAR x forward -> camera z; a plain pinhole with f=500 at the image centre
    proj = np.array([[w / 2, -500, 0, 0], [h / 2, 0, -500, 0], [1, 0, 0, 0]], np.float32)
    return Frame(image, pts, proj)


def test_raw_network_payload_is_letterboxed_nchw_with_projected_lidar():
    info = _info(RAW_FUSION)
    payload = dict(build_payload(info, _frame()))
    images, lidar = payload[S.IMAGES], payload[S.LIDAR_DEPTH]
    assert images.shape == (1, 3, 384, 640) and images.dtype == np.uint8
    # 720x1280 -> scale 0.5 -> 360x640 centred: 12 rows of padding above and below
    assert (images[0, :, :12] == 114).all() and (images[0, :, -12:] == 114).all()
    assert lidar.shape == (1, 1, 384, 640) and lidar.dtype == np.float32
    depths = sorted(lidar[lidar > 0].tolist())
    assert depths == pytest.approx([10.0, 20.0])  # both points land inside, at their distance


def test_ensemble_payload_sends_the_source_frame_or_its_encoding():
    info = _info(ENSEMBLE)
    assert info.steps == ("fusion_n_preprocess", "fusion_n")
    raw = dict(build_payload(info, _frame()))
    assert set(raw) == {S.IMAGE, S.POINTS, S.PROJECTION}  # optional resize flag left out
    assert raw[S.IMAGE].shape == (720, 1280, 3)
    jpeg = dict(build_payload(info, _frame(), encoding="jpeg"))
    assert set(jpeg) == {S.IMAGE_ENCODED, S.POINTS, S.PROJECTION}
    assert bytes(jpeg[S.IMAGE_ENCODED][:2]) == b"\xff\xd8"  # a JPEG's start-of-image marker


def test_fusion_model_without_lidar_frames_is_refused():
    info = _info(RAW_FUSION)
    with pytest.raises(SpecError, match="LiDAR"):
        build_payload(info, _frame(points=False))


def test_frames_from_a_folder_are_rgb(tmp_path):
    import cv2

    bgr = np.zeros((40, 60, 3), np.uint8)
    bgr[..., 2] = 200  # red in OpenCV's BGR order
    cv2.imwrite(str(tmp_path / "a.png"), bgr)
    (tmp_path / "notes.txt").write_text("not an image")
    frames = folder_frames(tmp_path, 5)
    assert len(frames) == 1 and frames[0].image[0, 0].tolist() == [200, 0, 0]
    with pytest.raises(SpecError, match="does not exist"):
        load_frames(2, images=tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SpecError, match="holds no"):
        load_frames(2, images=tmp_path / "empty")


# --- against the real server (the session's tritonserver from tests/conftest.py) ----------------
NETWORK = "cam_n"


@pytest.fixture(scope="module")
def url(triton_server) -> str:
    return triton_server.url


@pytest.fixture(scope="module")
def frames() -> list[Frame]:
    return load_frames(3, seed=7)  # world frames with LiDAR


def _run(options: LoadTestOptions, frames: list[Frame]):
    from clients.loadtest import LoadTest

    with LoadTest(options, frames, "world") as test:
        return test.run()


def _quick(url: str, models: tuple[str, ...], **kwargs) -> LoadTestOptions:
    base = dict(warmup_s=0.5, window_s=2.0, max_windows=2, stable_windows=2, tolerance=0.5, workers=2)
    return LoadTestOptions(url=url, models=models, **{**base, **kwargs})


@pytest.mark.triton
def test_sweep_counts_agree_with_the_server_and_littles_law(url, frames):
    result = _run(_quick(url, (NETWORK,), concurrency=(1, 3)), frames)
    assert [s.concurrency for s in result.steps] == [1, 3]
    for step in result.steps:
        assert step.client_errors_total == 0, step.errors
        assert step.successes > 0
        # every request the harness counted as answered is one Triton counted as a success, and no more
        assert step.client_successes_total == step.server_successes_total[NETWORK]
        # closed loop: `concurrency` requests always in flight, so throughput x mean latency must give
        # it back (Little's law); 25 % covers the harness's own time between a response and the next
        # send and the requests cut by the window edges
        assert step.little_concurrency == pytest.approx(step.concurrency, rel=0.25)
        split = step.server[NETWORK]
        assert split.requests > 0 and split.executions > 0
        assert split.compute_infer_ms > 0
        assert 1.0 <= split.avg_batch <= step.concurrency  # a batch never holds more than is in flight
        lat = step.latency
        assert lat.p50 <= lat.p90 <= lat.p95 <= lat.p99 <= lat.max
        assert step.harness_cpu_ms_per_request > 0


@pytest.mark.triton
@pytest.mark.parametrize(
    ("ensemble", "network", "shared_memory"),
    [("perception", "cam_n_frame", "system"), ("perception_fusion", "fusion_n_frame", "none")],
)
def test_ensembles_count_every_request_once(url, frames, ensemble, network, shared_memory):
    from serving.spec import ENSEMBLE_CAMERA, ENSEMBLE_FUSION

    assert ensemble in (ENSEMBLE_CAMERA, ENSEMBLE_FUSION)
    result = _run(_quick(url, (ensemble,), concurrency=(2,), shared_memory=shared_memory), frames)
    step = result.steps[0]
    assert step.client_errors_total == 0, step.errors
    assert step.successes > 0
    # the ensemble and each model it runs saw exactly the requests the harness sent
    assert set(step.server_successes_total) >= {ensemble, network}
    expected = dict.fromkeys(step.server_successes_total, step.client_successes_total)
    assert step.server_successes_total == expected
    assert step.networks == (network,)  # the table's server split is the network's, not the ensemble's
    assert step.network_split() is step.server[network]


@pytest.mark.triton
def test_poisson_rate_mode_sends_what_it_reports(url, frames):
    result = _run(_quick(url, (NETWORK,), rate=6.0, arrivals="poisson", max_outstanding=16), frames)
    step = result.steps[0]
    assert step.mode == "rate" and step.target_rate == 6.0
    assert step.client_errors_total == 0, step.errors
    assert step.dropped == 0
    assert step.client_successes_total == step.server_successes_total[NETWORK] > 0


def _cli(*args: str):
    import subprocess
    import sys

    entry = "from percept.cli import main; main()"
    return subprocess.run([sys.executable, "-c", entry, "loadtest", *args], capture_output=True, text=True)


@pytest.mark.triton
def test_cli_slo_exit_code_both_ways_and_output_files(url, tmp_path):
    import csv
    import json

    common = ["--url", url, "--model", NETWORK, "--frames", "2", "--workers", "1", "--warmup", "0.3"]
    common += ["--window", "1", "--max-windows", "1", "--stable-windows", "1"]
    generous = _cli(*common, "--concurrency", "1,2", "--slo-p99-ms", "600000", "--out", str(tmp_path / "ok"))
    assert generous.returncode == 0, generous.stderr
    impossible = _cli(*common, "--concurrency", "1", "--slo-p99-ms", "0.001", "--out", str(tmp_path / "miss"))
    assert impossible.returncode == 3, impossible.stderr
    assert "SLO missed" in impossible.stderr

    out = tmp_path / "ok"
    rows = list(csv.DictReader((out / "loadtest.csv").open()))
    assert [int(r["concurrency"]) for r in rows] == [1, 2]
    assert all(float(r["throughput"]) > 0 and float(r["lat_p99_ms"]) > 0 for r in rows)
    doc = json.loads((out / "loadtest.json").read_text())
    assert [s["concurrency"] for s in doc["steps"]] == [1, 2]
    assert doc["steps"][0]["client_successes_total"] == doc["steps"][0]["server_successes_total"][NETWORK]
    png = (out / "loadtest.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


@pytest.mark.triton
def test_unknown_model_is_one_clear_error(url, tmp_path):
    proc = _cli("--url", url, "--model", "no_such_model", "--out", str(tmp_path))
    assert proc.returncode == 1
    assert "no_such_model" in proc.stderr and "Traceback" not in proc.stderr
