"""Batch video processing (`percept video`): inputs, decoding, the in-flight window, outputs."""

from clients.video.pipeline import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, RunReport, VideoOptions, run_video

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "RunReport", "VideoOptions", "run_video"]
