"""`percept doctor`: what this machine has, read from the installed packages, and the exit code."""

import importlib.util
import socket
import subprocess
import sys
from pathlib import Path

from serving import ngc
from serving.doctor import numpy_check, ports_check, run_checks, tensorrt_check


def _doctor(cwd: Path | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", "from percept.cli import main; main()", "doctor"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=cwd)


def test_doctor_reports_this_machine_and_exits_0_when_the_default_path_is_there():
    checks = {c.what: c for c in run_checks()}
    server = checks["tritonserver (nvidia-pytriton)"]
    assert server.ok and Path(server.found.split(": ", 1)[1]).is_file()
    stub = next(c for w, c in checks.items() if w.startswith("python-backend stub for Python"))
    assert stub.ok and Path(stub.found).is_file()
    assert checks["shipped weights"].found.startswith("cam-n, fusion-n")
    r = _doctor()
    assert r.returncode == 0, r.stdout + r.stderr
    for row in ("Python", "numpy", "tritonserver", "python-backend stub", "GPU", "TensorRT", "Ray", "ports"):
        assert row in r.stdout
    assert "ready" in r.stdout and len(r.stdout.splitlines()) <= 24  # one screen


def test_numpy_2_is_a_missing_piece_with_the_fix():
    bad = numpy_check("2.1.0")
    assert not bad.ok and bad.required and bad.status == "MISSING" and "numpy<2" in bad.todo
    assert numpy_check("1.26.4").ok


def test_a_busy_default_port_is_named_with_the_way_around_it():
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        check = ports_check((("gRPC", port),))
    assert check.ok  # the demo and tests take free ports: only `percept serve`'s defaults are affected
    assert check.found == f"in use: {port} (gRPC)" and "--grpc-port 0" in check.todo


def test_tensorrt_is_reported_against_the_target_release():
    check = tensorrt_check()
    assert f"target {ngc.RELEASE}" in check.found and not check.required
    if importlib.util.find_spec("tensorrt") is None:  # this machine: none, optional, with where to build
        assert not check.ok and ngc.TENSORRT_IMAGE in check.todo
