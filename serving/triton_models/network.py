"""Triton python-backend model: an ONNX graph on ONNX Runtime, batching for real.

The dynamic batcher hands ``execute`` several requests; their inputs are concatenated on the batch
axis, ONNX Runtime runs once, and the outputs are split back per request. The model's config names
its inputs and outputs: the network's, or the frame model's when its file is the frame graph
(serving.triton_models.frame). Each repository's model.py (`percept repo build`) imports a class.
"""

import json
import logging
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from serving.errors import SpecError
from serving.ort_session import OrtSettings, network_session
from serving.processing import check_network_inputs, concat_batches, split_batches
from serving.spec import SPEC_KEY, ModelSpec

log = logging.getLogger(__name__)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.spec = ModelSpec.from_dict(json.loads(params[SPEC_KEY]))
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.session = network_session(path, OrtSettings.from_parameters(params))
        self.input_names = [t["name"] for t in config["input"]]
        self.output_names = [t["name"] for t in config["output"]]
        self.params = params

    def _run(self, per_request):
        batch, sizes = concat_batches(per_request)
        values = self.session.run(self.output_names, batch)
        return split_batches(dict(zip(self.output_names, values, strict=True)), sizes)

    def execute(self, requests):
        per_request = [
            {name: pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in self.input_names}
            for r in requests
        ]
        refused = {}
        for i, inputs in enumerate(per_request):
            try:
                self.check(inputs)
            except SpecError as exc:
                refused[i] = pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)
        valid = [inputs for i, inputs in enumerate(per_request) if i not in refused]
        ran = iter(self._run_isolated(valid) if valid else [])
        results = [refused[i] if i in refused else next(ran) for i in range(len(per_request))]
        responses = []
        for result in results:
            if isinstance(result, pb_utils.TritonError):
                responses.append(pb_utils.InferenceResponse(error=result))
            else:
                tensors = [pb_utils.Tensor(n, np.ascontiguousarray(a)) for n, a in result.items()]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses

    def check(self, inputs):
        """A request's own fault, found before the batch runs (SpecError)."""
        check_network_inputs(inputs)

    def _run_isolated(self, per_request):
        try:
            return self._run(per_request)
        except Exception as exc:  # isolate the request that broke the batch: run one at a time
            log.warning(
                "batched run of %d requests failed (%s); running them one by one", len(per_request), exc
            )
            results = []
            for inputs in per_request:
                try:
                    results.append(self._run([inputs])[0])
                except Exception as one_exc:
                    results.append(_error(one_exc))
            return results


def _error(exc: Exception):
    # ONNX Runtime's InvalidArgument (rank, shape, type of an input) is the request's own fault
    if type(exc).__name__ == "InvalidArgument":
        return pb_utils.TritonError(f"network refused this request: {exc}", pb_utils.TritonError.INVALID_ARG)
    return pb_utils.TritonError(f"network failed on this request: {exc}")
