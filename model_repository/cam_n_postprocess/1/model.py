"""Written by `percept repo build`: the model is serving.triton_models.postprocess."""

from serving.triton_models.postprocess import TritonPythonModel  # noqa: F401
