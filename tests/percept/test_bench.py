"""percept bench: the arithmetic and the report, not timings."""

from __future__ import annotations

import pytest

from percept.bench.facts import MachineFacts, ServedModelFacts, ServerFacts
from percept.bench.served import WireBytes
from serving.ort_session import OrtSettings


def _machine(**changes) -> MachineFacts:
    fields = {"cpu": "x", "cores": 2, "avx512": False, "gpu": None, "load_avg_1m": 1.0}
    return MachineFacts(**(fields | changes))


def test_bench_figures_compare_ratios_with_their_goals():
    from percept.bench.figures import Figure

    low = Figure("1", "overhead", ("served", 11.0, "ms"), ("in-process", 10.0, "ms"), "<= 1.10")
    assert low.ratio == pytest.approx(1.1) and low.met is True
    high = Figure("2", "peak", ("served", 8.0, "fps"), ("in-process", 10.0, "fps"), ">= 0.90")
    assert high.met is False
    assert Figure("3", "batching", ("on", 2.0, "fps"), ("off", 1.0, "fps")).met is None


def test_bench_raw_fp32_bytes_follow_the_spec_shapes():
    pytest.importorskip("torch", reason="the anchor count comes from exporters.networks (torch)")
    from percept.bench.served import raw_fp32_bytes
    from serving.spec import ModelSpec

    sizes = raw_fp32_bytes(ModelSpec(name="cam-n"))
    anchors = (384 // 8) * (640 // 8) + (384 // 16) * (640 // 16) + (384 // 32) * (640 // 32)
    assert sizes == {
        "det_raw": anchors * (5 + 3) * 4,
        "seg_logits": 3 * 384 * 640 * 4,
        "depth_fp32": 192 * 320 * 4,
    }


def test_bench_report_names_what_was_not_measured(tmp_path):
    from percept.bench.figures import FIGURES, figures
    from percept.bench.report import markdown
    from percept.bench.results import Bench

    bench = Bench(tmp_path)
    bench.errors["video"] = "RuntimeError: percept video failed (1)"
    bench.wire = WireBytes(ensemble=30_000, raw_network=29_000, raw_fp32={"seg": 300_000})
    bench.machine_start = bench.machine_end = _machine()
    bench.seconds["total"] = 1.0
    bench.figures = figures(bench)
    assert [f.key for f in bench.figures] == [spec.key for spec in FIGURES]
    wire = next(f for f in bench.figures if f.key == "6")
    assert wire.ratio == pytest.approx(0.1) and wire.met is True
    text = markdown(bench)
    assert text.count("not measured") >= 7  # every figure but the wire one lacks its inputs
    assert "percept video failed" in text and "GPU rows" in text


def test_bench_report_states_the_facts_it_was_given(tmp_path):
    from percept.bench.report import markdown
    from percept.bench.results import Bench

    bench = Bench(tmp_path, input_hw=(256, 512))
    bench.machine_start = _machine(cpu="Test CPU 9000", cores=7, avx512=True, gpu="Test GPU")
    bench.machine_end = _machine(cores=7, load_avg_1m=3.25)
    bench.served = ServedModelFacts(
        "cam_n", "python", OrtSettings(intra_op_threads=5, allow_spinning=True), 3, True, 8
    )
    bench.server = ServerFacts("triton", "9.87.6", "inside nvidia-pytriton 1.2.3")
    bench.wire = WireBytes(ensemble=30_000, raw_network=29_000, raw_fp32={"seg": 300_000})
    bench.gflops_per_frame = 1.5
    text = markdown(bench)
    assert "Test CPU 9000, 7 cores (AVX-512), Test GPU" in text
    assert "shared 7-core machine" in text and "on the same 7 cores" in text
    assert "no GPU" not in text and "2 cores" not in text and "384x640" not in text
    assert "tritonserver 9.87.6 (inside nvidia-pytriton 1.2.3, python backend running ONNX Runtime)" in text
    assert "5 intra-op threads, 1 inter-op thread, spinning on" in text
    assert "3 network instances, dynamic batching on" in text
    assert "one 256x512 world frame" in text and "GFLOP per cam-n 256x512 frame" in text
    assert "3.25 at the end" in text


def test_bench_reads_the_served_models_settings_from_the_config_the_builder_wrote(tmp_path):
    from percept.bench.facts import read_served_model
    from serving.model_config import BatchingOptions, RepositoryOptions, config_text, network_config
    from serving.spec import ModelSpec

    options = RepositoryOptions(
        intra_op_threads=3, allow_spinning=True, network_instances=4, batching=BatchingOptions(dynamic=False)
    )
    folder = tmp_path / "cam_n"
    folder.mkdir()
    (folder / "config.pbtxt").write_text(config_text(network_config(ModelSpec(name="cam-n"), options)))
    served = read_served_model(tmp_path, "cam_n")
    assert served.ort == OrtSettings(intra_op_threads=3, inter_op_threads=1, allow_spinning=True)
    assert (served.instances, served.dynamic_batching, served.engine) == (4, False, "python")


def test_bench_measures_this_machine():
    import os

    from percept.bench.facts import measure_machine

    machine = measure_machine()
    assert 1 <= machine.cores <= (os.cpu_count() or 1) and machine.cpu


def test_bench_history_gives_each_ratio_its_spread(tmp_path):
    from percept.bench.figures import Figure
    from percept.bench.history import append_history, read_history, spread

    path = tmp_path / "history.jsonl"
    for served in (11.0, 13.0):
        figures = [Figure("1", "overhead", ("served", served, "ms"), ("in-process", 10.0, "ms"), "<= 1.10")]
        append_history(path, figures, load_avg_1m=2.0)
    with path.open("a") as f:
        f.write('{"torn line\n')  # an interrupted write must not break later runs
    history = read_history(path)
    assert len(history) == 2
    assert spread(history, "1") == "1.10-1.30 (2)"
    assert spread(history, "2") == "-"


def test_bench_record_holds_the_typed_measurements_as_json(tmp_path):
    import json

    from percept.bench.figures import FIGURES, figures
    from percept.bench.results import Bench
    from percept.bench.run import record

    bench = Bench(tmp_path, machine_start=_machine(cores=7), input_hw=(256, 512))
    bench.wire = WireBytes(ensemble=30_000, raw_network=29_000, raw_fp32={"seg": 300_000})
    bench.figures = figures(bench)
    back = json.loads(json.dumps(record(bench), default=str))
    assert back["facts"]["machine_start"]["cores"] == 7
    assert back["facts"]["wire"]["raw_fp32"] == {"seg": 300_000}
    assert back["facts"]["input_hw"] == [256, 512]
    assert [f["key"] for f in back["figures"]] == [spec.key for spec in FIGURES]


def test_bench_ray_figure_splits_start_up_from_steady_state(tmp_path):
    from percept.bench.figures import figures
    from percept.bench.results import Bench
    from percept.bench.served import EngineRuns

    local = {"fps": 5.0, "seconds": 160.0, "frames_processed": 800}
    timing = {"ray_connected": 25.0, "workers_ready": 27.0, "units_done": 186.0, "joined": 187.0}
    ray = {
        "fps": 4.0,
        "seconds": 200.0,
        "frames_processed": 800,
        "timing": timing,
        "units": dict.fromkeys("abcdefgh"),
    }
    ray["inputs"] = {"a": {}, "b": {}}
    bench = Bench(tmp_path, engines=EngineRuns(local, ray, 162.0, 203.0, workers=2, shard_frames=100))
    fig = next(f for f in figures(bench) if f.key == "12")
    assert fig.ratio == pytest.approx(0.8) and fig.met is None
    assert bench.engines is not None and bench.engines.ray_steady_fps == pytest.approx(5.0)
    assert "27.0 s are start-up (ray.init 25.0 s" in fig.note and "(1.00 x local)" in fig.note
    assert "8 units" in fig.note


def test_bench_tune_figure_is_the_best_over_the_defaults_at_the_slo(tmp_path):
    from percept.bench.figures import figures
    from percept.bench.results import Bench
    from percept.bench.tuned import TuneFacts

    bench = Bench(tmp_path)
    bench.tune = TuneFacts("1x2t b8 d0us fp32", 30.0, 80.0, 2, 24.0, 95.0, 2, True, 7, 1, 180.0, 100.0)
    (fig,) = [f for f in figures(bench) if f.numerator[0].startswith("tune's best")]
    assert fig.ratio == pytest.approx(1.25) and fig.met is None
    assert "7 candidates in 180 s (1 left by the budget)" in fig.note and "p99 <= 100 ms" in fig.note


def test_bench_is_a_percept_command_and_a_module():
    import subprocess
    import sys

    for entry in (["-c", "from percept.cli import main; main()", "bench"], ["-m", "percept.bench"]):
        proc = subprocess.run([sys.executable, *entry, "--help"], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "--quick" in proc.stdout and "--markdown" in proc.stdout


def _step(value: int, p99_ms: float, cpu_ms: float, throughput: float, mode: str = "streams"):
    from clients.loadtest.result import StepResult
    from clients.loadtest.stats import Latency

    return StepResult(
        mode=mode, concurrency=value, target_rate=None, windows=1, stable=True, duration_s=1.0,
        successes=10, throughput=throughput, latency=Latency(1.0, 1.0, 1.0, 1.0, p99_ms, p99_ms),
        errors={}, dropped=0, max_send_lag_ms=0.0, server={}, client_successes_total=10,
        client_errors_total=0, server_successes_total={}, harness_cpu_ms_per_request=cpu_ms,
        harness_cpu_share=0.0,
    )  # fmt: skip


def _search(model: str, capacity: int, cpu_ms: float):
    from clients.loadtest.capacity import Capacity, largest_held
    from clients.loadtest.result import LoadTestResult
    from percept.bench.served import StreamsCapacity

    steps = {}

    def holds(n: int) -> bool:
        steps[n] = _step(n, 50.0 if n <= capacity else 400.0, cpu_ms, 10.0 * n)
        return n <= capacity

    found = Capacity(100.0, largest_held(holds, 1, 64), steps)
    result = LoadTestResult("u", (model,), "streams", "frames", {}, {}, [steps[v] for v in sorted(steps)])
    return StreamsCapacity(model, found, result)


def test_bench_streams_figures_from_the_capacity_searches(tmp_path):
    from clients.loadtest.result import LoadTestResult
    from percept.bench.figures import figures
    from percept.bench.results import Bench

    bench = Bench(tmp_path)
    peak = _step(8, 300.0, 0.3, 60.0, mode="concurrency")
    bench.sweeps["raw"] = LoadTestResult("u", ("cam_n",), "concurrency", "frames", {}, {}, [peak])
    bench.streams = {"cam-n": _search("perception", 3, 0.4), "fusion-n": _search("perception_fusion", 2, 0.6)}
    by_key = {f.key: f for f in figures(bench)}
    cam, fusion, cpu = by_key["9"], by_key["10"], by_key["11"]
    assert cam.numerator == ("3 streams x 10 fps", 30.0, "frames/s") and cam.ratio == pytest.approx(0.5)
    assert "1, 2, 4 (missed), 3" in cam.note  # the search's steps, in the order run
    assert fusion.ratio == pytest.approx(2 / 3)
    assert cpu.numerator == ("at 3 streams", 0.4, "ms") and cpu.met is True


def test_bench_report_puts_the_reduced_precision_accuracy_beside_fp32(tmp_path):
    from percept.bench.precision import PrecisionAccuracy, PrecisionRow
    from percept.bench.report import markdown
    from percept.bench.results import Bench

    bench = Bench(tmp_path)
    bench.machine_start = bench.machine_end = _machine()
    assert "Not measured in this run" in markdown(bench)  # the stage failed or did not run
    metrics = {"map50": 0.645, "map50_95": 0.348, "miou": 0.925, "abs_rel": 0.064}
    rows = [
        PrecisionRow("fp32", True, metrics, dict.fromkeys(metrics, 0.0)),
        PrecisionRow(
            "int8", True, metrics, {"map50": -0.0013, "abs_rel": 0.0015}, [], ["net.backbone.stem.bn"]
        ),
    ]
    bench.precision = PrecisionAccuracy(scenes=100, calibration_images=128, rows=rows)
    text = markdown(bench)
    assert "| fp32 | all met | 0.6450 | 0.3480 | 0.9250 | 0.0640 | +0.0000 |" in text
    assert (
        "| int8 | all met | 0.6450 | 0.3480 | 0.9250 | 0.0640 | -0.0013 | - | - | +0.0015 | 1 layer |" in text
    )
    assert "int8 layers kept in FP32 by the sensitivity fallback: net.backbone.stem.bn" in text


def test_bench_video_figure_shows_where_the_cpu_goes_and_its_ceiling(tmp_path):
    from percept.bench.figures import figures
    from percept.bench.results import Bench
    from percept.bench.served import VideoRun
    from percept.bench.video_figure import ceiling, client_budget_ms

    assert ceiling(30.0, 10.0) == pytest.approx(0.75) and client_budget_ms(36.0) == pytest.approx(4.0)
    cpu = {"decode": 1.0, "annotate": 4.0, "encode": 5.0, "other": 2.0, "total": 12.0}
    flags = ("--raw", "--model", "cam_n")
    bench = Bench(tmp_path, machine_start=_machine())
    bench.video = VideoRun(30.0, 20.0, {"cpu_ms_per_frame": cpu}, flags)
    bench.video_ensemble = VideoRun(28.0, 21.0, {"cpu_ms_per_frame": cpu})
    assert "not measured" in next(f for f in figures(bench) if f.key == "5").note  # no model-only peak
    from percept.bench.video_figure import video_figure

    numerator, denominator, note = video_figure(bench, ("served cam_n peak (c=8)", 50.0, "frames/s"))
    assert numerator[1] / denominator[1] == pytest.approx(0.6)
    # S = 2 cores / 50 frames/s = 40 ms; C = 12 ms: S / (S + C) = 0.77; 0.90 needs C <= 4.4 ms
    assert "S = 2 cores / 50.0 frames/s = 40.0 ms" in note and "S / (S + C) = 0.77" in note
    assert "C = 12.0 ms (encode 5.0, annotate 4.0, other 2.0, decode 1.0" in note
    assert "0.90 needs C <= 4.4 ms" in note
    assert (
        "`percept video --raw --model cam_n` (client letterbox" in note
        and "ensemble (the default): 28.0" in note
    )
