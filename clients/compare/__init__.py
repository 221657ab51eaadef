"""`percept compare`: a rollout gate, a candidate model or engine against the baseline, head by head."""

from clients.compare.run import CompareOptions, CompareReport, run_compare

__all__ = ["CompareOptions", "CompareReport", "run_compare"]
