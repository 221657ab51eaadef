"""Start and stop a real tritonserver process.

By default the binary inside the ``nvidia-pytriton`` wheel (Triton 2.51, python backend only) is
used. That binary needs three things that :class:`TritonServer` arranges:

* its shared libraries from ``site-packages/nvidia_pytriton.libs`` on ``LD_LIBRARY_PATH``;
* a backend directory whose ``python/`` folder holds the backend library *and* the
  ``triton_python_backend_stub`` built for the running Python (the wheel ships one stub per Python
  version); we assemble it in a private temporary directory;
* this environment's ``bin/`` first on ``PATH``: the stub finds ``python3`` (and with it numpy and
  onnxruntime) through ``PATH``; ``PYTHONPATH`` alone does not work.

Any other binary (the NGC image's ``/opt/tritonserver/bin/tritonserver``) runs with its own backends.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serving.errors import MissingDependencyError, ServingError
from serving.ngc import ALLOW_CLIENT_SHM
from serving.stubs import remove_regions, shm_regions

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_BIND_FAILURES = ("address already in use", "failed to start grpc", "failed to start http")


@dataclass(frozen=True)
class ServerOptions:
    """How to run tritonserver. Ports of 0 are replaced by free ports on ``address``."""

    repository: Path
    tritonserver: Path | None = None  # None: the binary inside the nvidia-pytriton wheel
    backend_directory: Path | None = None  # None: private one (wheel) or the binary's own
    address: str = "127.0.0.1"  # gRPC; HTTP and metrics have their own, loopback unless asked
    http_address: str = "127.0.0.1"
    metrics_address: str = "127.0.0.1"
    grpc_port: int = 0
    http_port: int = 0
    metrics_port: int = 0
    log_file: Path | None = None  # None: a file in the server's temporary directory
    log_verbose: int = 0
    startup_timeout_s: float = 120.0
    stop_grace_s: float = 15.0
    exit_timeout_s: int = 10  # Triton's own wait for in-flight requests on SIGTERM
    extra_args: tuple[str, ...] = field(default_factory=tuple)
    require_all_models: bool = True  # False: serve those that load (live, not ready) instead of exiting
    # clients may register system shared memory: NGC 26.x refuses it unless started with
    # serving.ngc.ALLOW_CLIENT_SHM; the embedded Triton 2.51 has no such flag (and allows it anyway)
    allow_client_shm: bool = False

    def __post_init__(self) -> None:
        for name in ("grpc_port", "http_port", "metrics_port"):
            port = getattr(self, name)
            if not 0 <= port < 65536:
                raise ServingError(f"{name} must be in 0..65535, got {port}")
        if self.startup_timeout_s <= 0 or self.stop_grace_s < 0:
            raise ServingError("startup_timeout_s must be > 0 and stop_grace_s >= 0")
        if self.allow_client_shm and self.tritonserver is None:
            raise ServingError(
                "allow_client_shm is for an NGC 26.x tritonserver (--tritonserver): the embedded Triton "
                "2.51 does not know --allow-client-shm and already allows client shared memory"
            )


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def pytriton_root() -> Path:
    """``site-packages/pytriton/tritonserver`` of the installed nvidia-pytriton wheel."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("nvidia-pytriton", "server")
    root = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    if not (root / "bin" / "tritonserver").exists():
        raise ServingError(f"no tritonserver binary in the nvidia-pytriton wheel at {root}")
    return root


def numpy_fits_stub(version: str) -> bool:
    """The wheel's python-backend stub returns zero-byte output tensors with numpy 2, silently."""
    return int(version.split(".")[0]) < 2


def check_numpy_for_stub() -> None:
    import numpy as np

    if not numpy_fits_stub(np.__version__):
        raise ServingError(
            f"numpy {np.__version__} is installed; the python-backend stub of nvidia-pytriton 0.7.0 "
            "returns empty outputs with numpy 2: pip install 'numpy<2'"
        )


def stub_path(root: Path, python_version: str | None = None) -> tuple[Path, list[str]]:
    """(the wheel's python-backend stub for ``python_version`` (this Python's by default), which may
    not exist; the Python versions the wheel has a stub for)."""
    version = python_version or f"{sys.version_info.major}.{sys.version_info.minor}"
    stubs = root / "python_backend_stubs"
    have = sorted(p.name for p in stubs.iterdir()) if stubs.is_dir() else []
    return stubs / version / "triton_python_backend_stub", have


def make_backend_directory(dest: Path, python_version: str | None = None) -> Path:
    """Assemble ``dest/python`` with the wheel's python backend and the stub for this Python."""
    root = pytriton_root()
    stub, have = stub_path(root, python_version)
    if not stub.exists():
        version = stub.parent.name
        raise ServingError(f"nvidia-pytriton has no python-backend stub for Python {version} (has {have})")
    python_dir = dest / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for src in (root / "backends" / "python").iterdir():
        if src.is_file():
            shutil.copy2(src, python_dir / src.name)
    shutil.copy2(stub, python_dir / stub.name)
    return dest


def _die_with_parent() -> None:
    # A test run or `percept serve` killed with SIGKILL must not leave a server behind.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _kill_group(pgid: int) -> None:  # what is left of the server's group (stubs orphaned by a crash)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class TritonServer:
    """A tritonserver process: ``with TritonServer(ServerOptions(repo)) as server: server.grpc_url``.

    ``start()`` returns once every model is loaded (strict readiness) and raises
    :class:`ServingError` with the log tail when the process exits or the timeout passes first.
    """

    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self._proc: subprocess.Popen | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._log_handle: Any = None
        self._backend_dir: Path | None = None
        self._regions: list[Path] = []  # the stubs' /dev/shm files, removed after a kill
        self.log_path: Path | None = None
        self.grpc_port = options.grpc_port
        self.http_port = options.http_port
        self.metrics_port = options.metrics_port

    # --- addresses ------------------------------------------------------------------------------
    @property
    def grpc_url(self) -> str:
        return f"{self.options.address}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"{_local(self.options.http_address)}:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{_local(self.options.metrics_address)}:{self.metrics_port}/metrics"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    # --- lifecycle ------------------------------------------------------------------------------
    def command(self, backend_dir: Path | None) -> list[str]:
        opts = self.options
        binary = opts.tritonserver or pytriton_root() / "bin" / "tritonserver"
        cmd = [
            str(binary),
            f"--model-repository={Path(opts.repository).resolve()}",
            f"--grpc-address={opts.address}",
            f"--grpc-port={self.grpc_port}",
            f"--http-address={opts.http_address}",
            f"--http-port={self.http_port}",
            f"--metrics-address={opts.metrics_address}",
            f"--metrics-port={self.metrics_port}",
            "--strict-readiness=true",
            f"--exit-on-error={str(opts.require_all_models).lower()}",
            f"--exit-timeout-secs={opts.exit_timeout_s}",
            f"--log-verbose={opts.log_verbose}",
        ]
        if backend_dir is not None:
            cmd.append(f"--backend-directory={backend_dir}")
        if opts.allow_client_shm:
            cmd.append(ALLOW_CLIENT_SHM)
        return cmd + list(opts.extra_args)

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        if self.options.tritonserver is None:
            libs = pytriton_root().parent.parent / "nvidia_pytriton.libs"
            env["LD_LIBRARY_PATH"] = os.pathsep.join(
                p for p in (str(libs), env.get("LD_LIBRARY_PATH", "")) if p
            )
        return env

    def start(self, attempts: int = 3) -> TritonServer:
        if self._proc is not None:
            raise ServingError("server already started")
        repo = Path(self.options.repository)
        if not repo.is_dir():
            raise ServingError(f"model repository {repo} is not a directory")
        check_numpy_for_stub()
        self._tmp = tempfile.TemporaryDirectory(prefix="percept-triton-")
        tmp = Path(self._tmp.name)
        backend_dir = self.options.backend_directory
        if backend_dir is None and self.options.tritonserver is None:
            backend_dir = make_backend_directory(tmp / "backends")
        self.log_path = Path(self.options.log_file or tmp / "tritonserver.log")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._backend_dir = backend_dir
        for attempt in range(1, attempts + 1):
            try:
                self._launch(backend_dir)
                return self
            except ServingError as exc:
                port_clash = any(s in self.log_tail().lower() for s in _BIND_FAILURES)
                self._cleanup_process()
                if not port_clash or attempt == attempts:
                    self._cleanup_tmp(keep_log=True)
                    raise
                log.warning("tritonserver could not bind its ports (attempt %d): %s", attempt, exc)
        raise AssertionError("unreachable")

    def restart(self) -> TritonServer:
        """Kill the process (stubs included) and start it again on the same ports. SIGKILL: while
        Triton drains on SIGTERM it answers NOT_FOUND, which clients do not retry; a dropped
        connection is UNAVAILABLE, retried until the new process is ready (serving.supervisor)."""
        self._cleanup_process(kill=True)
        self._launch(self._backend_dir, keep_ports=True)
        return self

    def _launch(self, backend_dir: Path | None, keep_ports: bool = False) -> None:
        opts = self.options
        if not keep_ports:  # a restart keeps the ports its clients know
            self.grpc_port = opts.grpc_port or free_port(opts.address)
            self.http_port = opts.http_port or free_port(opts.http_address)
            self.metrics_port = opts.metrics_port or free_port(opts.metrics_address)
        cmd = self.command(backend_dir)
        log.info("starting %s", " ".join(cmd))
        assert self.log_path is not None
        self._log_handle = open(self.log_path, "ab")  # noqa: SIM115 - closed in _cleanup_process
        self._proc = subprocess.Popen(
            cmd,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.environment(),
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            # its own process group: the python-backend stubs join it, and a server that crashed
            # (or was SIGKILLed) leaves them orphaned; stop() reaps the whole group
            start_new_session=True,
        )
        self._wait_ready()
        self._regions = shm_regions(self._proc.pid)
        log.info("tritonserver ready: grpc %s, http %s (log %s)", self.grpc_url, self.http_url, self.log_path)

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.options.startup_timeout_s
        url = f"http://{self.http_url}/v2/health/{'ready' if self.options.require_all_models else 'live'}"
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                raise ServingError(
                    f"tritonserver exited with code {code} during start-up; log tail:\n{self.log_tail()}"
                )
            if http_ok(url):
                return
            time.sleep(0.25)
        waited = self.options.startup_timeout_s
        raise ServingError(f"tritonserver not ready after {waited:.0f}s; log tail:\n{self.log_tail()}")

    def is_ready(self) -> bool:
        return self.running and http_ok(f"http://{self.http_url}/v2/health/ready")

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def wait(self) -> int:  # until the process exits; its exit code
        if self._proc is None:
            raise ServingError("server not started")
        return self._proc.wait()

    def send_signal(self, sig: int) -> None:
        if self.running and self._proc is not None:
            self._proc.send_signal(sig)

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after the grace period; returns the exit code (None if never started)."""
        code = self._cleanup_process()
        self._cleanup_tmp(keep_log=code not in (0, None))
        return code

    def _cleanup_process(self, kill: bool = False) -> int | None:
        proc, self._proc = self._proc, None
        code = None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
                try:
                    proc.wait(self.options.stop_grace_s)
                except subprocess.TimeoutExpired:
                    grace = self.options.stop_grace_s
                    log.warning("tritonserver did not stop within %.0fs; killing it", grace)
                    proc.kill()
                    proc.wait()
            code = proc.returncode
            _kill_group(proc.pid)
            remove_regions(self._regions)
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None
        return code

    def _cleanup_tmp(self, keep_log: bool) -> None:
        # a failed server keeps its log (copied out of the temp dir); pass log_file to keep every log
        if self._tmp is not None:
            if keep_log and self.log_path and self.options.log_file is None and self.log_path.exists():
                kept = Path(tempfile.gettempdir()) / f"percept-tritonserver-{os.getpid()}-{id(self)}.log"
                shutil.copy2(self.log_path, kept)
                self.log_path = kept
                log.info("tritonserver log kept at %s", kept)
            self._tmp.cleanup()
            self._tmp = None

    def log_tail(self, lines: int = 30) -> str:
        """The server's error lines (model load failures) followed by the last ``lines`` lines."""
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(errors="replace").splitlines()
        # Triton's error lines start "E<mmdd> "; a failed load is logged long before the tail
        errors = [ln for ln in text if _is_error_line(ln)]
        tail = text[-lines:]
        head = [ln for ln in errors if ln not in tail]
        return "\n".join([*head, *(["..."] if head else []), *tail])

    def __enter__(self) -> TritonServer:
        return self.start() if self._proc is None else self

    def __exit__(self, *exc) -> None:
        self.stop()


def _local(address: str) -> str:
    return "127.0.0.1" if address in ("0.0.0.0", "") else address  # where this host reaches it


def _is_error_line(line: str) -> bool:
    noise = ("CudaDriverHelper", "NVML", "DCGM")
    return len(line) > 5 and line[0] == "E" and line[1:5].isdigit() and not any(n in line for n in noise)


def http_ok(url: str) -> bool:
    """GET ``url`` answered 200 within 2 s (Triton's health and model-ready endpoints)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False
