"""What this machine has for the project, one :class:`Check` per piece (`percept doctor`).

Read without importing the heavy packages (versions from their installed metadata; torch and Ray
are never imported on the serving side): the report takes a second, and a broken install of one
package cannot stop it. ``required`` pieces are what the default path needs (export is optional
there: the demo's networks come with the package; serving on the embedded Triton with ONNX Runtime;
the gRPC client); the others are reported with what they are for.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from serving import ngc

# the ports `percept serve` binds by default (gRPC, HTTP, metrics); the demo and tests take free ones
DEFAULT_PORTS = (("gRPC", 8001), ("HTTP", 8000), ("metrics", 8002))


@dataclass(frozen=True)
class Check:
    what: str
    found: str  # a version, a path, or "-"
    ok: bool
    required: bool
    todo: str = ""  # what to do about it; empty when nothing is needed

    @property
    def status(self) -> str:
        if self.ok:
            return "OK"
        return "MISSING" if self.required else "optional"


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _package(what: str, dist: str, extra: str, required: bool, why: str) -> Check:
    v = _version(dist)
    return Check(
        what,
        v or "-",
        v is not None,
        required,
        "" if v else f"pip install 'perception-serving[{extra}]' ({why})",
    )


def python_check() -> Check:
    v = f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    ok = sys.version_info >= (3, 10)
    return Check("Python", f"{v} ({sys.executable})", ok, True, "" if ok else "Python >= 3.10")


def numpy_check(version: str | None = None) -> Check:
    """``version``: the installed numpy's by default."""
    v = version or _version("numpy")
    if v is None:
        return Check("numpy", "-", False, True, "pip install 'numpy<2'")
    from serving.launcher import numpy_fits_stub

    ok = numpy_fits_stub(v)
    todo = (
        ""
        if ok
        else "pip install 'numpy<2': the embedded Triton's python-backend stub returns empty "
        "outputs with numpy 2"
    )
    return Check("numpy (< 2 for the embedded Triton)", v, ok, True, todo)


def tritonserver_checks() -> list[Check]:
    """The tritonserver binary inside nvidia-pytriton and the python-backend stub for this Python
    (how serving.launcher finds them)."""
    from serving.launcher import pytriton_root, stub_path

    hint = "pip install 'perception-serving[server]' (nvidia-pytriton ships tritonserver)"
    try:
        root = pytriton_root()
    except Exception as exc:  # noqa: BLE001 - missing wheel or binary: reported, not raised
        return [
            Check("tritonserver (nvidia-pytriton)", "-", False, True, f"{hint}; {exc}"),
            Check("python-backend stub", "-", False, True, "comes with the tritonserver above"),
        ]
    binary = root / "bin" / "tritonserver"
    stub, have = stub_path(root)
    pyver = stub.parent.name
    found = f"{_version('nvidia-pytriton') or '?'}: {binary}"
    stub_todo = (
        "" if stub.is_file() else f"use a Python the wheel has a stub for: {', '.join(have) or 'none'}"
    )
    return [
        Check(
            "tritonserver (nvidia-pytriton)", found, binary.is_file(), True, "" if binary.is_file() else hint
        ),
        Check(
            f"python-backend stub for Python {pyver}",
            str(stub) if stub.is_file() else "-",
            stub.is_file(),
            True,
            stub_todo,
        ),
    ]


def ports_check(ports: tuple[tuple[str, int], ...] = DEFAULT_PORTS, address: str = "127.0.0.1") -> Check:
    """Free ports on loopback: a port to bind at all (required), and `percept serve`'s defaults."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((address, 0))
    except OSError as exc:
        return Check(f"ports on {address}", "-", False, True, f"cannot bind a port: {exc}")
    busy = []
    for name, port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((address, port))
            except OSError:
                busy.append(f"{port} ({name})")
    found = "free: " + ", ".join(str(p) for _, p in ports) if not busy else "in use: " + ", ".join(busy)
    todo = (
        ""
        if not busy
        else "percept serve --grpc-port 0 --http-port 0 --metrics-port 0 (free ones), or stop what holds them"
    )
    # busy defaults only matter to `percept serve` with its defaults: the demo and tests take free ports
    return Check(f"ports on {address}", found, True, True, todo)


def gpu_check() -> Check:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return Check(
            "GPU (nvidia-smi)",
            "none",
            False,
            False,
            "CPU only: ONNX Runtime on the embedded Triton (the default path)",
        )
    try:
        out = (
            subprocess.run(
                [smi, "--query-gpu=name,driver_version,compute_cap", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            )
            .stdout.strip()
            .splitlines()
        )
    except (subprocess.SubprocessError, OSError) as exc:
        return Check("GPU (nvidia-smi)", "-", False, False, f"nvidia-smi failed: {exc}")
    return Check(
        "GPU (nvidia-smi)", "; ".join(out) or "none", bool(out), False, "" if out else "no GPU listed"
    )


def torch_check() -> Check:
    v = _version("torch")
    if v is None:
        return Check(
            "torch (export, train)",
            "-",
            False,
            False,
            "pip install 'perception-serving[export]' to export or train",
        )
    note = " (CPU build)" if "+cpu" in v else ""
    return Check("torch (export, train)", v + note, True, False)


def tensorrt_check() -> Check:
    """The installed TensorRT against the one the target NGC image runs (serving.ngc)."""
    from serving.tensorrt_pin import same_tensorrt

    target = ngc.tensorrt_version()
    pin = f"target {ngc.RELEASE}: " + (target or f"unpinned (serving/ngc.py; {ngc.TENSORRT_VERSION_ENV})")
    v = _version("tensorrt") or _version("tensorrt-cu13") or _version("tensorrt-cu12")
    if v is None and importlib.util.find_spec("tensorrt") is not None:
        v = "installed, version unknown"
    what = "TensorRT (--engine tensorrt)"
    build = f"build engines in {ngc.TENSORRT_IMAGE} (percept export --engine tensorrt --print-docker)"
    if v is None:
        return Check(what, f"-; {pin}", False, False, f"only for TensorRT engines: {build}")
    if target is None:
        todo = f"set {ngc.TENSORRT_VERSION_ENV} to the TensorRT of {ngc.TRITON_IMAGE} (dpkg -l)"
        return Check(what, f"{v}; {pin}", False, False, todo)
    match = v[0].isdigit() and same_tensorrt(v, target)
    todo = "" if match else f"an engine must be built by the image's TensorRT {target}: {build}"
    return Check(what, f"{v}; {pin}", match, False, todo)


def weights_check() -> Check:
    """The networks' shipped checkpoints, read from the installed package (not a source tree)."""
    spec = importlib.util.find_spec("exporters.weights")
    folder = (
        Path(next(iter(spec.submodule_search_locations)))
        if spec and spec.submodule_search_locations
        else None
    )
    names = sorted(p.stem for p in folder.glob("*.pt")) if folder else []
    todo = "" if names else "reinstall perception-serving: the wheel carries exporters/weights/*.pt"
    return Check(
        "shipped weights", f"{', '.join(names)} ({folder})" if names else "-", bool(names), True, todo
    )


def run_checks() -> list[Check]:
    return [
        python_check(),
        numpy_check(),
        *tritonserver_checks(),
        _package(
            "ONNX Runtime", "onnxruntime", "server", True, "the python backend runs the networks with it"
        ),
        _package("tritonclient (gRPC)", "tritonclient", "client", True, "percept video, loadtest"),
        weights_check(),
        ports_check(),
        gpu_check(),
        tensorrt_check(),
        torch_check(),
        _package("Ray (--engine ray)", "ray", "ray", False, "percept video --engine ray"),
    ]


def ready(checks: list[Check]) -> bool:
    """Whether the default path (serve on the embedded Triton, the client, the demo) has what it needs."""
    return all(c.ok for c in checks if c.required)
