"""`percept tune`: search a network's repository configuration under a latency or throughput constraint.

Each candidate (instances, ONNX Runtime threads, max batch, preferred batch, queue delay, precision)
is a repository written by the builder, served by a restarted tritonserver and measured by the
load-test harness, ``repeats`` times per concurrency level (search.py says how the candidates are
chosen); a change is recommended only when it beats the defaults beyond the repeats' noise
(decision.py, on the intervals of stats.py), else the tune says to keep the defaults. Torch-free;
it never imports the exporters (the precision files and their accuracy come from serving.onnx_meta).
"""

from clients.tune.decision import Decision, decide
from clients.tune.measure import CandidateResult, Point
from clients.tune.options import Constraint, TuneOptions
from clients.tune.report import render_table, write_best, write_table
from clients.tune.search import TuneResult, run_tune
from clients.tune.space import Candidate, SearchSpace, parse_ints

__all__ = [
    "Candidate",
    "CandidateResult",
    "Constraint",
    "Decision",
    "Point",
    "SearchSpace",
    "TuneOptions",
    "TuneResult",
    "decide",
    "parse_ints",
    "render_table",
    "run_tune",
    "write_best",
    "write_table",
]
