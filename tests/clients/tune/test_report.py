"""What a tune writes, on synthetic measurements (no server): the intervals, and a repository only
for a recommended change."""

from __future__ import annotations

import json

import pytest

from clients.tune import (
    Candidate,
    Constraint,
    SearchSpace,
    TuneOptions,
    render_table,
    run_tune,
    write_best,
    write_table,
)
from clients.tune.report import clear_best
from serving.model_config import network_model_name, parse_config
from serving.ort_session import OrtSettings
from tests.clients.tune.synthetic import measure_with
from tests.tiny_onnx import tiny_spec

SLO = Constraint(slo_p99_ms=50)


def test_equal_candidates_keep_the_defaults_and_write_no_repository(tiny, tmp_path):
    space = SearchSpace(instances=(1, 4), threads=(2,), max_batch=(8,), queue_delay_us=(0,))
    calls: list[Candidate] = []
    options = TuneOptions(onnx=tiny, space=space, constraint=SLO, quick=True)
    result = run_tune(options, [], tmp_path, measure=measure_with(4.0, lambda c: (100.0, 10.0), calls))
    assert calls == [result.defaults, *space.grid()]  # no closing measurement of the defaults
    assert result.decision().keep_defaults and result.best() is result.baseline
    assert result.repeat_seconds == 3 * 2.0
    summary = json.loads(write_table(result, tmp_path)["json"].read_text())
    assert summary["recommendation"]["change"] is False
    assert summary["recommendation"]["reason"].startswith("keep the defaults")
    assert "repo_build_flags" not in summary["best"]
    row = next(r for r in summary["rows"] if r["defaults"])
    # 99, 100, 101 req/s: 100 ± t(0.975, 2) * 1 / sqrt(3)
    assert row["best"] and row["repeats"] == 3 and row["throughput_ci"] == pytest.approx(2.484, abs=1e-3)
    with pytest.raises(ValueError, match="no change"):
        write_best(result, tmp_path)
    (tmp_path / "best_repository").mkdir()  # an earlier tune's
    (tmp_path / "best_repo_build.sh").write_text("percept repo build ...\n")
    assert clear_best(tmp_path) == [tmp_path / "best_repository", tmp_path / "best_repo_build.sh"]


def test_a_recommended_change_is_written_as_a_repository_with_its_values(tiny, tmp_path):
    space = SearchSpace(instances=(1, 2), threads=(1, 2), max_batch=(8,), queue_delay_us=(0,))
    result = run_tune(
        TuneOptions(onnx=tiny, space=space, constraint=SLO), [], tmp_path, measure=measure_with(0.0)
    )
    recommended = result.decision().recommended
    assert recommended is not None and recommended.candidate == Candidate(2, 1, 8, 0, 0)
    (tmp_path / "best_repository" / "stale_model").mkdir(parents=True)  # an earlier tune's
    repo, command = write_best(result, tmp_path)
    assert not (repo / "stale_model").exists()
    cfg = parse_config((repo / network_model_name(tiny_spec()) / "config.pbtxt").read_text())
    assert cfg.instance_group[0].count == 2 and cfg.max_batch_size == 8
    params = {k: v.string_value for k, v in cfg.parameters.items()}
    assert OrtSettings.from_parameters(params).intra_op_threads == 1
    assert command.endswith("--threads 1") and (tmp_path / "best_repo_build.sh").read_text() == command + "\n"
    text = _rendered(result)
    assert "105.00 ± 2.61" in text  # the recommended candidate's throughput with its interval
    assert "recommended" in text


def _rendered(result) -> str:
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(render_table(result))
    return console.export_text()
