"""Triton python-backend model: the pipeline's decode step.

A JPEG/PNG decoded once, at the DCT scale the letterbox needs; a raw frame passed on; a fusion
network's LiDAR points projected into the model's depth image (TensorRT's parser refuses the
scatter with a reduction this needs). Its outputs are the frame model's inputs. Each repository's
model.py (`percept repo build`) imports this class.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from serving import spec as S
from serving.ensemble import FrameLimits, pipeline_inputs
from serving.errors import SpecError
from serving.processing import check_request, decode_step, request_frames
from serving.spec import SPEC_KEY, ModelSpec


def _get(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.spec = ModelSpec.from_dict(json.loads(params[SPEC_KEY]))
        self.inputs = [t.name for t in pipeline_inputs(self.spec)]
        self.limits = FrameLimits.from_parameters(params)

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                arrays = {n: _get(request, n) for n in self.inputs}
                check_request(arrays, self.limits)  # sizes first: nothing decoded or projected yet
                frames = request_frames(
                    arrays[S.IMAGE], arrays[S.IMAGE_ENCODED], self.limits, self.spec.input_hw
                )
                out = decode_step(self.spec, frames, arrays.get(S.POINTS), arrays.get(S.PROJECTION))
            except SpecError as exc:
                error = pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            except Exception as exc:  # this request only: an exception out of execute fails the batch
                error = pb_utils.TritonError(f"decode failed on this request: {type(exc).__name__}: {exc}")
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            tensors = [pb_utils.Tensor(n, np.ascontiguousarray(a)) for n, a in out.items()]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
