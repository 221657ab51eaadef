"""The wheel: built from the project, it carries what the commands read (the shipped weights, the
python-backend models), and the installed package runs from outside the source tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("serving", "world", "exporters", "clients", "percept")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built offline (no index, no build isolation) from a copy of the tree, so that no
    build/ folder of an earlier build can slip stale files into it."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path_factory.mktemp("dist")
    cmd = [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation", "--no-index"]
    r = subprocess.run([*cmd, "-w", str(dist), str(src)], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    # the backend's warnings (-v shows them), e.g. setuptools' on a TOML-table project.license
    assert "Warning:" not in r.stdout + r.stderr
    (built,) = dist.glob("perception_serving-*.whl")
    return built


def test_the_wheel_carries_the_weights_and_the_models_and_no_tests(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        for network in ("cam-n", "fusion-n"):
            for suffix in (".pt", ".json"):
                member = f"exporters/weights/{network}{suffix}"
                assert z.read(member) == (ROOT / member).read_bytes()
        models = {p.relative_to(ROOT).as_posix() for p in (ROOT / "serving" / "triton_models").glob("*.py")}
        assert models <= names  # the model.py files `percept repo build` writes import these
        assert not any(n.startswith("tests/") for n in names)
        info = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = z.read(info).decode()
        entry = z.read(info.replace("METADATA", "entry_points.txt")).decode()
    assert "License-Expression: Apache-2.0" in metadata
    for extra in ("client", "server", "export"):
        assert f"Provides-Extra: {extra}" in metadata
    assert "percept = percept.cli:main" in entry


def test_the_installed_package_runs_outside_the_repository(wheel, tmp_path):
    site = tmp_path / "site"
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--no-index",
        "--target",
        str(site),
        str(wheel),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    work = tmp_path / "work"
    work.mkdir()
    # the installed copy first on the path, the repository nowhere on it (cwd is elsewhere)
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = "import percept, exporters.weights as w; print(percept.__file__, w.shipped_checkpoint('cam-n'))"
    r = subprocess.run([sys.executable, "-c", where], capture_output=True, text=True, cwd=work, env=env)
    assert r.returncode == 0, r.stderr
    percept_file, weights = r.stdout.split()
    assert Path(percept_file).is_relative_to(site) and Path(weights).is_relative_to(site)
    doctor = [sys.executable, "-m", "percept.cli", "doctor"]
    r = subprocess.run(doctor, capture_output=True, text=True, cwd=work, env=env, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert str(site / "exporters" / "weights") in r.stdout  # the weights the doctor found are the wheel's
    r = subprocess.run([*doctor[:3], "demo", "--help"], capture_output=True, text=True, cwd=work, env=env)
    assert r.returncode == 0 and "--seconds" in r.stdout, r.stderr
