"""Written by `percept repo build`: the model is serving.triton_models.frame."""

from serving.triton_models.frame import TritonPythonModel  # noqa: F401
