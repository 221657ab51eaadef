"""Triton python-backend model: the frame model (a raw frame in, source-pixel results out).

Its file is either the frame graph (serving.frame_graph: letterbox and postprocess in the graph,
run as it is) or the network alone, with the same letterbox and postprocess done around it by
OpenCV and numpy in this one hop (serving.processing: the CPU reference of the graph). On the
2-core CPU OpenCV's bilinear resize of a 720p frame costs a quarter of ONNX Runtime's Resize, so
the builder gives the embedded engine the network; the NGC engines get the graph
(RepositoryOptions.frame_graph). Each repository's model.py (`percept repo build`) imports this class.
"""

import numpy as np

from serving import spec as S
from serving.ensemble import FrameLimits
from serving.errors import SpecError
from serving.processing import (
    check_frame,
    check_network_inputs,
    check_request,
    concat_batches,
    letterbox_frames,
    postprocess,
    split_batches,
)
from serving.triton_models.network import TritonPythonModel as NetworkModel


class TritonPythonModel(NetworkModel):
    def initialize(self, args):
        super().initialize(args)
        self.limits = FrameLimits.from_parameters(self.params)
        self.graph = S.IMAGE in {i.name for i in self.session.get_inputs()}
        self.network_outputs = [t.name for t in self.spec.network_outputs]

    def check(self, inputs):
        check_request(inputs, self.limits)  # bytes first
        image, source = inputs[S.IMAGE], inputs[S.SOURCE_HW]
        if image.ndim != 4 or image.shape[0] == 0:
            raise SpecError(f"{S.IMAGE} must be [batch,H,W,3] uint8 RGB, got shape {tuple(image.shape)}")
        check_frame(image[0], self.limits)
        if source.shape != (len(image), 2) or (source < 1).any():
            raise SpecError(
                f"{S.SOURCE_HW} must be [batch,2] positive (height, width) of each frame's source, "
                f"got {source.tolist()}"
            )
        for h, w in source.tolist():
            self.limits.check(int(h), int(w), "source frame")
        check_network_inputs(inputs)

    def _run(self, per_request):
        if self.graph:
            return super()._run(per_request)
        nets, rows = [], []
        for inputs in per_request:  # Triton batches equal shapes: each request letterboxed alone
            images, geoms = letterbox_frames(self.spec, inputs[S.IMAGE])
            net = {S.IMAGES: images}
            if S.LIDAR_DEPTH in inputs:
                net[S.LIDAR_DEPTH] = inputs[S.LIDAR_DEPTH]
            nets.append(net)
            rows.append(np.stack([lb.to_tensor() for lb in geoms]))
        batch, sizes = concat_batches(nets)
        values = self.session.run(self.network_outputs, batch)
        outputs = split_batches(dict(zip(self.network_outputs, values, strict=True)), sizes)
        return [
            postprocess(self.spec, out, row, source_hw=inputs[S.SOURCE_HW])
            for out, row, inputs in zip(outputs, rows, per_request, strict=True)
        ]
