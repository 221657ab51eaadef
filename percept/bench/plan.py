"""What one bench run measures: sweeps, rounds and repeats (choices of the bench, not facts)."""

from __future__ import annotations

SWEEP = (1, 2, 4, 8, 16)
SINGLE_TASK_SWEEP = (2, 4, 8)  # c=1 cannot be a trio's peak: three requests in turn, one core idle
BATCHING_CONCURRENCY = 8
OVERHEAD_ROUNDS = 4  # served c=1 steps, each between two in-process batch-1 runs
VIDEO_SCENES = 80  # the bench video: distinct world scenes (40 with --quick), repeated
VIDEO_REPEATS = 5
# figure 5's run: `--raw --model <the raw network>`, the client's letterbox (one server hop instead
# of the ensemble's three, the same results: tests/clients/video/test_video_triton.py); the
# ensemble's run beside it in the note
VIDEO_RAW = True
COMMAND = "percept bench  (make bench)"
# the tune figure: `percept tune --quick` of cam_n under p99 <= 100 ms (the streams SLO of the issue)
TUNE_SLO_P99_MS = 100.0
TUNE_CONCURRENCY = (1, 2)  # closed-loop levels per candidate: p99 <= 100 ms allows few in flight on 2 cores
TUNE_BUDGET_S = 300.0
# camera streams (figures 9-11): the largest number of 10-fps streams held at p99 <= 100 ms
STREAMS_FPS = 10.0
STREAMS_SLO_P99_MS = 100.0
STREAMS_LIMIT = 64  # the capacity search stops here (a 2-core CPU server holds a handful)
STREAMS_QUEUE = 8  # frames a stream keeps in flight before it drops (0.8 s at 10 fps)
