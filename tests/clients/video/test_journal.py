"""The exactly-once JSONL: valid prefix kept, torn or out-of-order tail cut off."""

from __future__ import annotations

import json

import pytest

from clients.video.journal import Journal, read_records


def _write(journal: Journal, n: int) -> None:
    journal.start_fresh()
    for i in range(n):
        journal.append({"frame": i, "value": i * i})
    journal.close()


def test_torn_last_line_is_repaired(tmp_path):
    journal = Journal(tmp_path / "results.jsonl")
    _write(journal, 5)
    with open(journal.partial_path, "ab") as fh:
        fh.write(b'{"frame": 5, "val')  # a crash in the middle of a write
    again = Journal(tmp_path / "results.jsonl")
    assert again.recover() == 5
    assert again.repaired
    again.append({"frame": 5, "value": 25})
    assert again.finish() == tmp_path / "results.jsonl"
    assert [r["frame"] for r in read_records(tmp_path / "results.jsonl")] == list(range(6))
    assert not again.partial_path.exists()


def test_out_of_order_and_garbage_tail_is_cut(tmp_path):
    journal = Journal(tmp_path / "r.jsonl")
    _write(journal, 3)
    with open(journal.partial_path, "ab") as fh:
        fh.write(json.dumps({"frame": 7}).encode() + b"\n" + b"not json\n")
    again = Journal(tmp_path / "r.jsonl")
    assert again.recover() == 3
    assert journal.partial_path.read_bytes().count(b"\n") == 3


def test_truncate_to_and_append_order_is_enforced(tmp_path):
    journal = Journal(tmp_path / "r.jsonl")
    _write(journal, 6)
    again = Journal(tmp_path / "r.jsonl")
    assert again.recover() == 6
    again.truncate_to(2)
    with pytest.raises(ValueError, match="expects frame 2"):
        again.append({"frame": 3})
    again.append({"frame": 2, "value": 4})
    again.close()
    assert [r["frame"] for r in read_records(again.partial_path)] == [0, 1, 2]
