# The cluster's TensorRT plan builder (deploy/k8s/tensorrt-plans.yaml): the NGC TensorRT image of the
# release in serving/ngc.py (same release as the Triton image, so the same TensorRT; the deploy tests
# check this file names it) with the project and its `engine` extra: cuda-python, ONNX, ONNX Runtime.
# No torch: plans are built from the ONNX that `percept export --engine onnx` verified.
#
#   docker build -f deploy/Dockerfile.builder -t perception-plan-builder .
ARG TENSORRT_IMAGE=nvcr.io/nvidia/tensorrt:26.10-py3
FROM ${TENSORRT_IMAGE}

WORKDIR /opt/perception-serving
COPY pyproject.toml constraints.txt README.md ./
COPY serving serving
COPY world world
COPY exporters exporters
COPY clients clients
COPY percept percept
RUN pip install --no-cache-dir ".[engine]"

ENTRYPOINT ["python", "-m", "exporters.export.plan_build"]
