"""Written by `percept repo build`: the model is serving.triton_models.decode."""

from serving.triton_models.decode import TritonPythonModel  # noqa: F401
