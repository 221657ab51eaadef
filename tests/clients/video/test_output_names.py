"""`percept video` output folders: one path component inside --out, whatever the input is called."""

from __future__ import annotations

import pytest

from clients.video.sources import discover, output_name


@pytest.mark.parametrize(
    "given, folder",
    [("drive", "drive"), ("../../x", "_.._x"), ("..", "input"), (".hidden", "hidden"), ("a b\n", "a_b_"),
     ("/etc/passwd", "_etc_passwd"), ("", "input"), ("x" * 300, "x" * 200)],
)  # fmt: skip
def test_output_name_is_one_safe_component(given, folder):
    assert output_name(given) == folder


def test_dot_names_take_the_real_folder_name(tmp_path, monkeypatch):
    work = tmp_path / "seq_07"
    work.mkdir()
    monkeypatch.chdir(work)
    names = [s.name for s in discover(["../../x.mp4", ".", "..mp4"])]
    assert names == ["x", "seq_07", "mp4"]
