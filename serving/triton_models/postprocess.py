"""Triton python-backend model: boxes to source pixels with class names, dense maps cropped.

Each repository's model.py (`percept repo build`) imports this class.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from serving import spec as S
from serving.ensemble import FrameLimits
from serving.errors import SpecError
from serving.processing import postprocess
from serving.spec import SPEC_KEY, ModelSpec


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.spec = ModelSpec.from_dict(json.loads(params[SPEC_KEY]))
        self.names = [t.name for t in self.spec.network_outputs]
        self.limits = FrameLimits.from_parameters(params)

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                outputs = {n: pb_utils.get_input_tensor_by_name(request, n).as_numpy() for n in self.names}
                letterbox = pb_utils.get_input_tensor_by_name(request, S.LETTERBOX).as_numpy()
                resize = pb_utils.get_input_tensor_by_name(request, S.RESIZE_TO_SOURCE)
                resize_to_source = bool(resize is not None and resize.as_numpy().any())
                out = postprocess(self.spec, outputs, letterbox, resize_to_source, self.limits)
            except SpecError as exc:
                error = pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            except Exception as exc:  # this request only: an exception out of execute fails the batch
                error = pb_utils.TritonError(
                    f"postprocess failed on this request: {type(exc).__name__}: {exc}"
                )
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            tensors = [
                pb_utils.Tensor(n, a if a.dtype == object else np.ascontiguousarray(a))
                for n, a in out.items()
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
