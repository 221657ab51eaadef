"""The NGC release the project deploys to: one place for its image tags and versions.

Everything that names the NGC Triton or TensorRT image, the TensorRT that builds engines for it, or
its CUDA / driver needs derives from here: the repository builder's plan check
(:mod:`serving.tensorrt_pin`, :mod:`serving.repository`), `percept serve --print-docker`
(:mod:`serving.docker`), the export stage (:mod:`exporters.export.tensorrt_plan`) and the docs.
deploy/Dockerfile and the Kubernetes / KServe manifests cannot import Python: tests/deploy checks
that they name :data:`RELEASE`.

Tested here: the Triton 2.51 binary inside nvidia-pytriton 0.7.0 (= NGC 24.10), python backend,
CPU. Targeted only (never run here: no GPU, no Docker, no TensorRT): the NGC image of
:data:`RELEASE` with its tensorrt_plan and onnxruntime backends.

A value that NVIDIA's pages did not confirm is ``None`` with the reason beside it; code that needs it
says so (and takes it from :data:`TENSORRT_VERSION_ENV` where a user has checked it in the image).
"""

from __future__ import annotations

import os

# The release: docs.nvidia.com/deeplearning/triton-inference-server/release-notes/rel-26-10.html
# ("Triton Inference Server Release 26.10"), the newest release those notes document.
RELEASE = "26.10"

# Triton server version inside the 26.10 image: UNCONFIRMED. The rel-26-10 page's version table did
# not come through; the monthly numbering (24.10 = 2.51, release-notes/rel-24-10.html) would make it
# 2.74, which is arithmetic, not a source. Nothing here depends on it.
TRITON_VERSION: str | None = None

# TensorRT inside the 26.10 Triton and TensorRT images: UNCONFIRMED. Neither the rel-26-10 page nor
# the Frameworks Support Matrix excerpt available here names it (TensorRT 11.1 was released June 2026
# with CUDA 13.3: github.com/NVIDIA/TensorRT/releases/tag/v11.1; pip gives 11.4 in 2026-10). Read it
# in the image (`dpkg -l | grep libnvinfer`) and set PERCEPT_NGC_TENSORRT_VERSION until it is pinned
# here; an engine must be built by exactly that version (serving.tensorrt_pin).
TENSORRT_VERSION: str | None = None
TENSORRT_VERSION_ENV = "PERCEPT_NGC_TENSORRT_VERSION"

# "Release 26.10 is based on CUDA 13.4.3.001" (release-notes/rel-26-10.html, Driver Requirements)
CUDA_VERSION = "13.4.3"

# Minimum driver: UNCONFIRMED. The same page's sentence names no number ("... which requires the NVIDIA
# Driver release."). CUDA 13.x needs an R580 or newer driver per the CUDA Toolkit release notes'
# compatibility table, which was not available here to confirm.
MIN_DRIVER: str | None = None

# "Release 26.10 supports CUDA compute capability 7.5 and later" (release-notes/rel-26-10.html, GPU
# Requirements): no Pascal or Volta engines for this target.
MIN_COMPUTE_CAPABILITY = (7, 5)

# Triton 26.x refuses client shared-memory registration unless started with this flag (server PR 8721;
# user-guide/docs/protocol/extension_shared_memory.html: "require the server to be started with
# --allow-client-shm=true. The default value is false"). The embedded Triton 2.51 does not know the
# flag and exits on it: only NGC command lines get it.
ALLOW_CLIENT_SHM = "--allow-client-shm=true"

TRITON_IMAGE = f"nvcr.io/nvidia/tritonserver:{RELEASE}-py3"
TENSORRT_IMAGE = f"nvcr.io/nvidia/tensorrt:{RELEASE}-py3"  # same month, same TensorRT as TRITON_IMAGE
KSERVE_RUNTIME_VERSION = f"{RELEASE}-py3"  # KServe's triton runtimeVersion is the image tag


def tensorrt_version() -> str | None:
    """The target's TensorRT: the pin, else what the user read in the image (environment), else None."""
    return TENSORRT_VERSION or os.environ.get(TENSORRT_VERSION_ENV) or None


def release_of(image: str) -> tuple[int, int] | None:
    """``nvcr.io/nvidia/tritonserver:26.10-py3`` -> (26, 10); None for a tag that names no release."""
    tag = image.rsplit(":", 1)[-1] if ":" in image else ""
    parts = tag.split("-", 1)[0].split(".")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return None
    return int(parts[0]), int(parts[1])


def needs_allow_client_shm(image: str) -> bool:
    """Whether a Triton image must be started with :data:`ALLOW_CLIENT_SHM` for client shared memory:
    the 26.x releases on (server PR 8721). An image whose tag names no release gets no flag: an older
    server exits on it, and `percept serve --image` says nothing of the version."""
    release = release_of(image)
    return release is not None and release >= (26, 1)
