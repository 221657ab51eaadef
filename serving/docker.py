"""The `docker run` that serves a model repository on the NGC Triton image."""

from __future__ import annotations

import shlex
from pathlib import Path

from serving.ngc import ALLOW_CLIENT_SHM, needs_allow_client_shm
from serving.security import ADMIN_KEY_ENV, SecurityOptions

CERTS = "/certs"  # where the container sees the TLS files, each mounted read-only on its own
_KEY_REFERENCE = "${" + ADMIN_KEY_ENV + "}"  # expanded by the container's shell, never printed


def docker_command(
    repository: Path,
    image: str,
    grpc_port: int = 8001,
    http_port: int = 8000,
    metrics_port: int = 8002,
    security: SecurityOptions | None = None,
) -> list[str]:
    """The equivalent ``docker run`` on the NGC Triton image with a GPU.

    The python-backend models import this package, ``serving`` (and numpy<2, OpenCV, ONNX Runtime),
    which the NGC image lacks: the package alone is mounted read-only (from a source tree or from a
    wheel's site-packages alike, never the host's other packages, built for another Python) and its
    run-time packages installed when the container starts (deploy/Dockerfile bakes both into an
    image instead).

    Clients on the host may send through system shared memory: the container shares the host's IPC
    namespace (``--ipc=host``, so /dev/shm is the same) and a 26.x image gets
    :data:`serving.ngc.ALLOW_CLIENT_SHM` (off by default there).

    ``security`` (`percept serve`'s TLS files, admin key, restricted protocols) carries over: each
    TLS file is mounted under :data:`CERTS` and the flags point there; the admin key is not written
    into the command but passed through from the caller's ``PERCEPT_ADMIN_KEY`` (``-e``), which the
    container's shell puts into the flags.
    """
    repo = Path(repository).resolve()
    package = Path(__file__).resolve().parent  # serving/: the python-backend models need nothing else
    security = security or SecurityOptions()
    mounts: list[str] = []
    inside: dict[Path, str] = {}
    for role, file in (("server.crt", security.tls_cert), ("server.key", security.tls_key)):
        if file is not None:
            inside[Path(file)] = f"{CERTS}/{role}"
    if security.tls_client_ca is not None:
        inside[Path(security.tls_client_ca)] = f"{CERTS}/client-ca.crt"
    for file, path in inside.items():
        mounts += ["-v", f"{file.resolve()}:{path}:ro"]
    flags = security.tritonserver_args(path=lambda p: inside[p], key=_KEY_REFERENCE)
    env = ["-e", ADMIN_KEY_ENV] if security.admin_key is not None and security.restricted else []
    serve = (
        "pip install -q 'numpy<2' 'opencv-python-headless<5' onnxruntime-gpu pyyaml && "
        "exec tritonserver --model-repository=/models --strict-readiness=true --exit-on-error=true"
    )
    if needs_allow_client_shm(image):
        serve += f" {ALLOW_CLIENT_SHM}"
    serve += "".join(f" {_shell_word(flag)}" for flag in flags)
    return [
        "docker",
        "run",
        "--rm",
        "--gpus",
        "all",
        "--ipc=host",  # the host's /dev/shm: client regions and the python backend's alike
        "-p",
        f"{grpc_port}:8001",
        "-p",
        f"{http_port}:8000",
        "-p",
        f"{metrics_port}:8002",
        "-v",
        f"{repo}:/models:ro",
        "-v",
        f"{package}:/opt/perception-serving/serving:ro",
        *mounts,
        "-e",
        "PYTHONPATH=/opt/perception-serving",
        *env,
        image,
        "bash",
        "-c",
        serve,
    ]


def _shell_word(flag: str) -> str:
    """One flag in the container's ``bash -c``: quoted as it is, except the key's reference, which
    the shell must expand (the rest of that flag is protocol names, ``:`` and ``=``)."""
    if _KEY_REFERENCE in flag:
        return f'"{flag}"'
    return shlex.quote(flag)
