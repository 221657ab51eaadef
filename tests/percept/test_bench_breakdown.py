"""Figure (1)'s breakdown: the replay model on the real tritonserver, and the arithmetic."""

from __future__ import annotations

import numpy as np
import pytest

from clients.loadtest.server_stats import ServerSplit
from percept.bench.breakdown import Breakdown, overhead_markdown
from percept.bench.served import AtOne, Overhead


def _split(queue: float, infer: float, output: float, request: float) -> ServerSplit:
    return ServerSplit(10, 0, request, queue, 0.1, infer, output, 10, 1.0)


def test_breakdown_takes_the_quietest_steps_and_gives_the_floor_of_the_figure():
    served = [
        AtOne(48.0, 48.5, _split(0.2, 45.0, 0.8, 46.1)),
        AtOne(46.0, 46.5, _split(0.1, 44.0, 0.7, 44.9)),
    ]
    replay = [AtOne(3.5, 3.6, _split(0.2, 1.2, 0.5, 2.0)), AtOne(3.0, 3.2, _split(0.1, 1.0, 0.4, 1.6))]
    found = Breakdown.of(Overhead(served, [41.0, 40.0, 42.0], replay))
    assert found is not None
    assert found.served.p50_ms == 46.0 and found.replay.p50_ms == 3.0 and found.ort_p50_ms == 40.0
    assert found.floor == pytest.approx(43.0 / 40.0)
    assert found.network_in_server_ms == pytest.approx(43.0)  # 46.0 - 3.0: served p50 less the replay's
    assert found.served.outside_ms == pytest.approx(46.5 - 44.9)
    assert "(40.0 + 3.0) / 40.0 = 1.07" in found.note()
    text = "\n".join(overhead_markdown(Overhead(served, [40.0], replay)))
    assert "| client + wire (client mean less Triton's mean request time) | 1.60 | 1.60 |" in text
    assert "| Triton infer (python-backend hop + execute) | 44.00 | 1.00 |" in text
    assert "Floor of figure (1) on this backend: 1.07" in text


def test_without_replay_steps_there_is_no_breakdown():
    assert Breakdown.of(Overhead([AtOne(46.0, 46.5, None)], [40.0])) is None
    assert overhead_markdown(Overhead([AtOne(46.0, 46.5, None)], [40.0])) == []
    assert overhead_markdown(None) == []


@pytest.mark.triton
def test_the_replay_model_answers_its_first_answer_through_the_served_model(tmp_path):
    """The replay is the served network model minus its run: the network's own answer to the first
    batch it executed (Triton's warm-up of zeros), then that answer again for any frame, through
    the same response path (so its latency is serving's fixed cost)."""
    from percept.bench.served import add_replay_model, start_server
    from serving.model_config import RepositoryOptions, network_model_name
    from serving.repository import build_repository
    from tests.serving.triton_helpers import infer
    from tests.tiny_onnx import gradient_rgb, make_tiny_onnx, tiny_spec

    spec = tiny_spec()
    onnx = make_tiny_onnx(spec, tmp_path / "tiny.onnx")
    repo = tmp_path / "repo"  # one instance: each instance of a replay keeps its own first answer
    build_repository([onnx], repo, RepositoryOptions(network_instances=1))
    network = network_model_name(spec)
    replay = add_replay_model(repo, network)
    h, w = spec.input_hw
    blank = np.zeros((1, 3, h, w), np.uint8)  # what the warm-up sends
    frames = [gradient_rgb((h, w), blue).transpose(2, 0, 1)[None].copy() for blue in (20, 230)]
    name = spec.network_inputs[0].name
    with start_server(repo) as server:
        first, second, warm = (infer(server.grpc_url, network, {name: f}) for f in (*frames, blank))
        assert any(not np.array_equal(first[k], second[k]) for k in first)  # the frames differ
        for frame in frames:
            answer = infer(server.grpc_url, replay, {name: frame})
            assert answer.keys() == warm.keys()
            for key, value in warm.items():
                np.testing.assert_array_equal(answer[key], value)
