"""Written by `percept repo build`: the model is serving.triton_models.preprocess."""

from serving.triton_models.preprocess import TritonPythonModel  # noqa: F401
