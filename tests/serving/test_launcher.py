"""The launcher and `percept serve`: start, readiness, failure with the log tail, stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import serving
from serving.docker import docker_command
from serving.errors import ServingError
from serving.launcher import ServerOptions, TritonServer, check_numpy_for_stub
from tests.serving.triton_helpers import write_broken_model

ROOT = Path(__file__).resolve().parents[2]
PERCEPT = str(Path(sys.executable).parent / "percept")  # the console script of this environment


@pytest.fixture
def broken_repository(tmp_path) -> Path:
    write_broken_model(tmp_path)
    return tmp_path


def test_numpy_guard_accepts_this_environment():
    assert int(np.__version__.split(".")[0]) < 2
    check_numpy_for_stub()  # raises ServingError under numpy 2 (the stub's empty-output bug)


def test_options_reject_bad_ports(tmp_path):
    with pytest.raises(ServingError, match="grpc_port"):
        ServerOptions(repository=tmp_path, grpc_port=70000)


def test_missing_repository_is_a_clear_error(tmp_path):
    with pytest.raises(ServingError, match="not a directory"):
        TritonServer(ServerOptions(repository=tmp_path / "nope")).start()


def test_docker_command_runs_the_ngc_image_with_a_gpu_and_the_repository_mounted(tmp_path):
    from serving.ngc import TRITON_IMAGE

    cmd = docker_command(tmp_path, TRITON_IMAGE, 9001, 9000, 9002)
    assert cmd[:2] == ["docker", "run"] and cmd[cmd.index("--gpus") + 1] == "all"
    assert f"{tmp_path.resolve()}:/models:ro" in cmd
    assert {"9001:8001", "9000:8000", "9002:8002"} <= set(cmd)
    assert TRITON_IMAGE in cmd and "--model-repository=/models" in cmd[-1]
    # only the serving package is mounted (a wheel's site-packages holds the host's other packages)
    package = Path(serving.__file__).resolve().parent
    assert (
        f"{package}:/opt/perception-serving/serving:ro" in cmd and "PYTHONPATH=/opt/perception-serving" in cmd
    )


def test_docker_command_allows_client_shm_on_26x_images_only(tmp_path):
    from serving.ngc import ALLOW_CLIENT_SHM, TRITON_IMAGE

    current = docker_command(tmp_path, TRITON_IMAGE)
    assert ALLOW_CLIENT_SHM in current[-1] and "--ipc=host" in current  # host clients share /dev/shm
    # an older image exits on the unknown flag (Triton 2.51 has none)
    assert ALLOW_CLIENT_SHM not in docker_command(tmp_path, "nvcr.io/nvidia/tritonserver:24.10-py3")[-1]


def test_ngc_tritonserver_gets_allow_client_shm_and_the_embedded_one_refuses_it(tmp_path):
    from serving.ngc import ALLOW_CLIENT_SHM

    ngc_binary = tmp_path / "tritonserver"
    server = TritonServer(ServerOptions(repository=tmp_path, tritonserver=ngc_binary, allow_client_shm=True))
    assert ALLOW_CLIENT_SHM in server.command(None)
    plain = TritonServer(ServerOptions(repository=tmp_path, tritonserver=ngc_binary))
    assert ALLOW_CLIENT_SHM not in plain.command(None)
    with pytest.raises(ServingError, match="embedded Triton 2.51 does not know --allow-client-shm"):
        ServerOptions(repository=tmp_path, allow_client_shm=True)


@pytest.mark.triton
def test_a_model_that_fails_to_load_raises_with_its_error_in_the_log_tail(broken_repository):
    server = TritonServer(ServerOptions(repository=broken_repository, startup_timeout_s=60))
    with pytest.raises(ServingError) as info:
        server.start()
    assert "weights file is corrupt (test)" in str(info.value)
    assert not server.running and server.log_path is not None and server.log_path.exists()


@pytest.mark.triton
def test_percept_serve_exits_non_zero_when_a_model_fails(broken_repository):
    proc = subprocess.run(
        [PERCEPT, "serve", "-r", str(broken_repository)]
        + ["--grpc-port", "0", "--http-port", "0", "--metrics-port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 1
    assert "weights file is corrupt (test)" in proc.stderr


@pytest.mark.triton
def test_percept_serve_stops_gracefully_on_sigterm(triton_repository, tmp_path):
    log = tmp_path / "server.log"
    proc = subprocess.Popen(
        [PERCEPT, "serve", "-r", str(triton_repository), "--log-file", str(log)]
        + ["--grpc-port", "0", "--http-port", "0", "--metrics-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 180
        lines = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "Triton ready" in line or (not line and proc.poll() is not None):
                break
        assert any("Triton ready" in ln for ln in lines), "".join(lines)
        os.kill(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        assert "stopped (exit code 0)" in out
        assert "Waiting for in-flight requests to complete" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.triton
def test_another_tritonserver_binary_with_its_own_backend_directory(triton_repository, tmp_path, monkeypatch):
    """--tritonserver PATH: the binary is started as given; here the wheel's binary again, with the
    library path and backend directory a Triton installation would bring."""
    from serving.launcher import make_backend_directory, pytriton_root

    root = pytriton_root()
    monkeypatch.setenv("LD_LIBRARY_PATH", str(root.parent.parent / "nvidia_pytriton.libs"))
    options = ServerOptions(
        repository=triton_repository,
        tritonserver=root / "bin" / "tritonserver",
        backend_directory=make_backend_directory(tmp_path / "backends"),
        startup_timeout_s=180,
    )
    with TritonServer(options) as server:
        assert server.is_ready()
        assert f"--backend-directory={tmp_path / 'backends'}" in server.command(options.backend_directory)
    assert not server.running


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.triton
def test_a_crashed_server_leaves_no_backend_stub_behind(triton_repository):
    # SIGKILL of tritonserver orphans its python-backend stubs; stop() must reap its process group
    server = TritonServer(ServerOptions(triton_repository, stop_grace_s=5)).start()
    pid = server.pid
    assert pid is not None and os.getpgid(pid) == pid
    os.kill(pid, signal.SIGKILL)
    server.stop()
    deadline = time.monotonic() + 10
    while _group_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _group_alive(pid), "python-backend stubs outlived the server"


def test_docker_command_carries_the_secure_profile_without_printing_the_key(tmp_path):
    """TLS files mounted and pointed at, the admin key passed through the environment: the printed
    command never holds the key, and the container's shell puts it into Triton's flags."""
    from serving.security import ADMIN_KEY_ENV, SecurityOptions

    cert, key, ca = (tmp_path / "pki" / n for n in ("s.crt", "s.key", "ca.crt"))
    cert.parent.mkdir()
    for f in (cert, key, ca):
        f.write_text("pem")
    secret = "0123456789abcdef-key"
    security = SecurityOptions(cert, key, ca, admin_key=secret)
    cmd = docker_command(tmp_path, "nvcr.io/nvidia/tritonserver:26.10-py3", security=security)
    assert not any(secret in part for part in cmd)
    assert {
        f"{cert}:/certs/server.crt:ro",
        f"{key}:/certs/server.key:ro",
        f"{ca}:/certs/client-ca.crt:ro",
    } <= set(cmd)
    assert cmd[cmd.index(ADMIN_KEY_ENV) - 1] == "-e"
    # the container's `bash -c`, with pip and tritonserver standing in as programs that print argv
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("pip", "tritonserver"):
        (bin_dir / name).write_text('#!/bin/sh\n[ "$(basename "$0")" = pip ] || printf "%s\\n" "$@"\n')
        (bin_dir / name).chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", ADMIN_KEY_ENV: secret}
    proc = subprocess.run(["bash", "-c", cmd[-1]], capture_output=True, text=True, env=env, timeout=30)
    assert proc.returncode == 0, proc.stderr
    args = proc.stdout.splitlines()
    restricted = "model-repository,model-config,shared-memory,statistics,trace,logging"
    assert f"--grpc-restricted-protocol={restricted}:admin-key={secret}" in args
    assert f"--http-restricted-api={restricted}:admin-key={secret}" in args
    assert "--grpc-server-cert=/certs/server.crt" in args and "--grpc-root-cert=/certs/client-ca.crt" in args
    assert args[0] == "--model-repository=/models" and args[-1] == "--model-control-mode=none"


def test_docker_command_of_the_default_profile_pins_model_control_only(tmp_path):
    cmd = docker_command(tmp_path, "img")
    assert cmd[-1].endswith("--exit-on-error=true --model-control-mode=none")
    assert "/certs" not in " ".join(cmd) and "PERCEPT_ADMIN_KEY" not in cmd
