"""Load-test harness for served perception models (torch-free).

Worker processes, each with its own gRPC client and threads, drive Triton with pre-built inputs in
closed loop (a concurrency sweep) or open loop (a request rate, constant or Poisson); each step
warms up, then measures windows until throughput and p95 agree, and reads Triton's statistics API
for the server-side split and the batch size the dynamic batcher achieved.
"""

from clients.loadtest.frames import Frame, load_frames
from clients.loadtest.options import LoadTestOptions, parse_concurrency
from clients.loadtest.report import render_table, write_outputs
from clients.loadtest.result import LoadTestResult, StepResult
from clients.loadtest.runner import LoadTest

__all__ = [
    "Frame",
    "LoadTest",
    "LoadTestOptions",
    "LoadTestResult",
    "StepResult",
    "load_frames",
    "parse_concurrency",
    "render_table",
    "write_outputs",
]
