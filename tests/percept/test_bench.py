"""percept bench: the arithmetic and the report, not timings."""

from __future__ import annotations

import pytest


def test_bench_figures_compare_ratios_with_their_goals():
    from percept.bench import Figure

    low = Figure("1", "overhead", ("served", 11.0, "ms"), ("in-process", 10.0, "ms"), "<= 1.10")
    assert low.ratio == pytest.approx(1.1) and low.met is True
    high = Figure("2", "peak", ("served", 8.0, "fps"), ("in-process", 10.0, "fps"), ">= 0.90")
    assert high.met is False
    assert Figure("3", "batching", ("on", 2.0, "fps"), ("off", 1.0, "fps")).met is None


def test_bench_raw_fp32_bytes_follow_the_spec_shapes():
    pytest.importorskip("torch", reason="the anchor count comes from exporters.networks (torch)")
    from percept.bench import raw_fp32_bytes
    from serving.spec import ModelSpec

    sizes = raw_fp32_bytes(ModelSpec(name="cam-n"))
    anchors = (384 // 8) * (640 // 8) + (384 // 16) * (640 // 16) + (384 // 32) * (640 // 32)
    assert sizes == {
        "det_raw": anchors * (5 + 3) * 4,
        "seg_logits": 3 * 384 * 640 * 4,
        "depth_fp32": 192 * 320 * 4,
    }


def test_bench_report_names_what_was_not_measured(tmp_path):
    from percept.bench import FIGURES, Bench, figures, markdown

    bench = Bench(tmp_path)
    bench.errors["video"] = "RuntimeError: percept video failed (1)"
    bench.facts["wire"] = {"ensemble": 30_000, "raw_network": 29_000, "raw_fp32": {"seg": 300_000}}
    bench.facts["machine_start"] = bench.facts["machine_end"] = {"cpu": "x", "cores": 2, "load_avg_1m": 1.0}
    bench.seconds["total"] = 1.0
    bench.figures = figures(bench)
    assert [f.key for f in bench.figures] == [key for key, _, _ in FIGURES]
    wire = next(f for f in bench.figures if f.key == "6")
    assert wire.ratio == pytest.approx(0.1) and wire.met is True
    text = markdown(bench)
    assert text.count("not measured") >= 7  # every figure but the wire one lacks its inputs
    assert "percept video failed" in text and "GPU rows" in text


def test_bench_history_gives_each_ratio_its_spread(tmp_path):
    from percept.bench import Bench, Figure, _spread, append_history, read_history

    path = tmp_path / "history.jsonl"
    for served in (11.0, 13.0):
        bench = Bench(tmp_path)
        bench.facts["machine_start"] = {"load_avg_1m": 2.0}
        bench.figures = [
            Figure("1", "overhead", ("served", served, "ms"), ("in-process", 10.0, "ms"), "<= 1.10")
        ]
        append_history(path, bench)
    with path.open("a") as f:
        f.write('{"torn line\n')  # an interrupted write must not break later runs
    history = read_history(path)
    assert len(history) == 2
    assert _spread(history, "1") == "1.10-1.30 (2)"
    assert _spread(history, "2") == "-"
