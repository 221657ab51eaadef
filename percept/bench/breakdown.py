"""Where figure (1)'s time goes: the served network at concurrency 1 against its replay.

The replay (:mod:`percept.bench.replay_model`) is the same served model answering from memory, so
its latency is the fixed cost of serving one request (client and wire, Triton's queue, the
python-backend hop, the output copy) and the served latency less that cost is the network's own run
inside the server. The floor of the figure on this backend is then (in-process + fixed) / in-process:
no change to the network's run can bring the ratio below it.
"""

from __future__ import annotations

from dataclasses import dataclass

from percept.bench.served import AtOne, Overhead

PHASES = (  # label, ServerSplit field: Triton's averages per request
    ("Triton queue (dynamic batcher)", "queue_ms"),
    ("Triton input copy", "compute_input_ms"),
    ("Triton infer (python-backend hop + execute)", "compute_infer_ms"),
    ("Triton output copy", "compute_output_ms"),
)


@dataclass(frozen=True)
class Breakdown:
    served: AtOne  # the quietest served step
    replay: AtOne  # the quietest replay step
    ort_p50_ms: float  # the quietest in-process batch-1 run

    @classmethod
    def of(cls, overhead: Overhead) -> Breakdown | None:
        if not overhead.served or not overhead.replay:
            return None
        quietest = min(overhead.served, key=lambda s: s.p50_ms)
        return cls(quietest, min(overhead.replay, key=lambda s: s.p50_ms), min(overhead.ort_p50_ms))

    @property
    def fixed_ms(self) -> float:
        return self.replay.p50_ms

    @property
    def floor(self) -> float:
        """The ratio figure (1) would read if the served network ran exactly as fast as in-process."""
        return (self.ort_p50_ms + self.fixed_ms) / self.ort_p50_ms

    @property
    def network_in_server_ms(self) -> float:
        """The served network's own run at p50: the served p50 less the replay's (Triton's infer
        times are means, which a slow tail lifts above a p50, so they are not compared with the
        in-process p50)."""
        return self.served.p50_ms - self.replay.p50_ms

    def note(self) -> str:
        return (
            f"where it goes (the table 'Where the time goes at concurrency 1'): serving's fixed cost, "
            f"measured by the same model answering from memory, is {self.fixed_ms:.1f} ms at p50; the "
            f"network inside the server runs {self.network_in_server_ms:.1f} ms (served p50 less the "
            f"replay's) vs {self.ort_p50_ms:.1f} ms in-process; so this backend's floor for the figure is "
            f"({self.ort_p50_ms:.1f} + {self.fixed_ms:.1f}) / {self.ort_p50_ms:.1f} = {self.floor:.2f}"
        )

    def table(self) -> list[str]:
        rows = [("client + wire (client mean less Triton's mean request time)", "outside")]
        lines = [
            "| where | served `cam_n` (ms) | replay: no network run (ms) |",
            "|---|---|---|",
        ]
        for label, key in (*rows, *PHASES):
            lines.append(f"| {label} | {self._cell(self.served, key)} | {self._cell(self.replay, key)} |")
        lines.append(f"| client mean | {self.served.avg_ms:.2f} | {self.replay.avg_ms:.2f} |")
        lines.append(f"| client p50 | {self.served.p50_ms:.2f} | {self.replay.p50_ms:.2f} |")
        lines.append(f"| in-process ONNX Runtime p50, batch 1 | {self.ort_p50_ms:.2f} | - |")
        return lines

    @staticmethod
    def _cell(step: AtOne, key: str) -> str:
        if key == "outside":
            return f"{step.outside_ms:.2f}"
        return f"{getattr(step.server, key):.2f}" if step.server else "-"


def overhead_markdown(overhead: Overhead | None) -> list[str]:
    """The BENCHMARKS.md section, empty when the overhead stage did not measure the replay."""
    found = Breakdown.of(overhead) if overhead is not None else None
    if found is None:
        return []
    return [
        "",
        "## Where the time goes at concurrency 1 (figure 1)",
        "",
        "The quietest served `cam_n` step and the quietest step of its replay (the same served model,",
        "its ONNX Runtime run done once per batch size and then answered from memory), both from the",
        "load-test harness at concurrency 1; Triton's columns are its statistics API's averages per",
        "request over the same requests.",
        "",
        *found.table(),
        "",
        f"Floor of figure (1) on this backend: {found.floor:.2f} (in-process p50 plus the fixed cost, over",
        "the in-process p50). On a faster CPU the network shrinks and the fixed cost does not, so the",
        "floor rises: it is the python backend's hop and the 737 kB request / 371 kB response on the wire,",
        "which the NGC image's onnxruntime and tensorrt_plan backends (no python hop) do not pay.",
    ]
