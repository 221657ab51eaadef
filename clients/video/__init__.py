"""Batch video processing (`percept video`).

sources (inputs, decoding) -> run (the in-flight window, frame order) -> journal / mp4 / render
(exactly-once outputs); options, report and progress hold what the run is asked, tells and shows.
"""

from clients.video.batch import run_video
from clients.video.options import (
    EXIT_FAILED,
    EXIT_FRAME_ERRORS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    VIDEO_RETRY,
    VideoOptions,
)
from clients.video.report import RunReport

__all__ = [
    "EXIT_FAILED",
    "EXIT_FRAME_ERRORS",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "VIDEO_RETRY",
    "RunReport",
    "VideoOptions",
    "run_video",
]
