"""The `docker run` that serves a model repository on the NGC Triton image."""

from __future__ import annotations

from pathlib import Path


def docker_command(
    repository: Path,
    image: str,
    grpc_port: int = 8001,
    http_port: int = 8000,
    metrics_port: int = 8002,
) -> list[str]:
    """The equivalent ``docker run`` on the NGC Triton image with a GPU.

    The python-backend models import this package (and numpy<2, OpenCV, ONNX Runtime), which the
    NGC image lacks: the project is mounted read-only and its run-time packages installed when the
    container starts (deploy/Dockerfile bakes both into an image instead).
    """
    repo = Path(repository).resolve()
    project = Path(__file__).resolve().parent.parent
    serve = (
        "pip install -q 'numpy<2' 'opencv-python-headless<5' onnxruntime-gpu pyyaml && "
        "exec tritonserver --model-repository=/models --strict-readiness=true --exit-on-error=true"
    )
    return [
        "docker",
        "run",
        "--rm",
        "--gpus",
        "all",
        "--shm-size=1g",
        "-p",
        f"{grpc_port}:8001",
        "-p",
        f"{http_port}:8000",
        "-p",
        f"{metrics_port}:8002",
        "-v",
        f"{repo}:/models:ro",
        "-v",
        f"{project}:/opt/perception-serving:ro",
        "-e",
        "PYTHONPATH=/opt/perception-serving",
        image,
        "bash",
        "-c",
        serve,
    ]
