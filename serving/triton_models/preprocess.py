"""Triton python-backend model: decode / letterbox a frame (and project its LiDAR points).

Each repository's model.py (`percept repo build`) imports this class.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from serving import spec as S
from serving.ensemble import FrameLimits
from serving.errors import SpecError
from serving.processing import preprocess, request_frames
from serving.spec import SPEC_KEY, ModelSpec


def _get(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.spec = ModelSpec.from_dict(json.loads(params[SPEC_KEY]))
        self.limits = FrameLimits(max_pixels=int(params["max_pixels"]), min_side=int(params["min_side"]))

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                frames = request_frames(_get(request, S.IMAGE), _get(request, S.IMAGE_ENCODED), self.limits)
                out = preprocess(self.spec, frames, _get(request, S.POINTS), _get(request, S.PROJECTION))
            except SpecError as exc:
                error = pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            tensors = [pb_utils.Tensor(n, np.ascontiguousarray(a)) for n, a in out.items()]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
