"""Written by `percept repo build`: the model is serving.triton_models.network."""

from serving.triton_models.network import TritonPythonModel  # noqa: F401
