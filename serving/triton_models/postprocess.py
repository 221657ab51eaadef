"""Triton python-backend model: boxes to source pixels with class names, dense maps cropped.

Each repository's model.py (`percept repo build`) imports this class.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from serving import spec as S
from serving.errors import SpecError
from serving.processing import postprocess
from serving.spec import SPEC_KEY, ModelSpec


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.spec = ModelSpec.from_dict(json.loads(params[SPEC_KEY]))
        self.names = [t.name for t in self.spec.network_outputs]

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                outputs = {n: pb_utils.get_input_tensor_by_name(request, n).as_numpy() for n in self.names}
                letterbox = pb_utils.get_input_tensor_by_name(request, S.LETTERBOX).as_numpy()
                resize = pb_utils.get_input_tensor_by_name(request, S.RESIZE_TO_SOURCE)
                resize_to_source = bool(resize is not None and resize.as_numpy().any())
                out = postprocess(self.spec, outputs, letterbox, resize_to_source)
            except SpecError as exc:
                error = pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            tensors = [
                pb_utils.Tensor(n, a if a.dtype == object else np.ascontiguousarray(a))
                for n, a in out.items()
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
