"""The bench's replay network model (python backend): the served network without its run.

It is the repository's own network model (the same config, inputs, outputs, checks and response
path) whose ONNX Runtime run is done once per batch size and instance (the first is Triton's
warm-up) and then answered from memory. Served at concurrency 1 it measures what serving a request
costs on top of running the network: the client and the wire, Triton's queue, the python-backend
hop and the output copy. The bench's figure (1) splits its served latency with it. ``FrameReplay``
does the same for the frame model (percept.bench.around).
"""

from serving.triton_models.frame import TritonPythonModel as FrameModel
from serving.triton_models.network import TritonPythonModel as NetworkModel


class TritonPythonModel(NetworkModel):
    def initialize(self, args):
        super().initialize(args)
        self._answers: dict[tuple[int, ...], list] = {}

    def _run(self, per_request):
        sizes = tuple(len(next(iter(r.values()))) for r in per_request)
        if sizes not in self._answers:  # the first request of this shape runs the network once
            self._answers[sizes] = super()._run(per_request)
        return self._answers[sizes]


class _ReplayedSession:
    """An ONNX Runtime session whose run is done once per (outputs, batch size), then answered from
    memory; everything else is the session's own."""

    def __init__(self, session) -> None:
        self._session = session
        self._answers: dict[tuple, list] = {}

    def run(self, names, feeds):
        key = (tuple(names), len(next(iter(feeds.values()))))
        if key not in self._answers:
            self._answers[key] = self._session.run(names, feeds)
        return self._answers[key]

    def __getattr__(self, name):
        return getattr(self._session, name)


class FrameReplay(FrameModel):
    """The frame model with its network's run replayed: the letterbox, the postprocess, the checks
    and the response path all run; the bench's figure of the path around the engine serves it."""

    def initialize(self, args):
        super().initialize(args)
        self.session = _ReplayedSession(self.session)
