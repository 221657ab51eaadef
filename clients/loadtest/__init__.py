"""Load-test harness for served perception models (torch-free).

Worker processes, each with its own gRPC channel and threads, drive Triton with requests
serialized once, in closed loop (a concurrency sweep), open loop (a request rate, constant or
Poisson) or as camera streams (each on its own clock, latency from the schedule, HDR histograms);
each step warms up, then measures windows until throughput and p95 agree, and reads Triton's
statistics API for the server-side split and the batch size the dynamic batcher achieved. The
capacity search finds the largest load that holds a p99 SLO in few steps.
"""

from clients.loadtest.capacity import Capacity, find_capacity, largest_held
from clients.loadtest.frames import Frame, load_frames
from clients.loadtest.options import LoadTestOptions, parse_concurrency
from clients.loadtest.report import render_table, write_outputs
from clients.loadtest.result import LoadTestResult, StepResult
from clients.loadtest.runner import LoadTest

__all__ = [
    "Capacity",
    "Frame",
    "LoadTest",
    "LoadTestOptions",
    "LoadTestResult",
    "StepResult",
    "find_capacity",
    "largest_held",
    "load_frames",
    "parse_concurrency",
    "render_table",
    "write_outputs",
]
