"""Figure (5), `percept video` end to end / model-only throughput, and the arithmetic of its ceiling.

Client and server share the machine's cores. At the model-only peak the server's frames cost
S = cores / peak CPU-seconds each (the load harness's own CPU included); `percept video` adds its
client's C per frame (its summary.json, ``cpu_ms_per_frame.total``, clients.stagecpu). With every
core busy, frames/s end to end <= cores / (S + C), so the ratio cannot pass S / (S + C).
"""

from __future__ import annotations

from percept.bench.results import Bench

Side = tuple[str, float, str]
GOAL = 0.90  # issue 16


def ceiling(server_ms: float, client_ms: float) -> float:
    """The highest end-to-end / model-only ratio when both share the cores: S / (S + C)."""
    return server_ms / (server_ms + client_ms)


def client_budget_ms(server_ms: float, goal: float = GOAL) -> float:
    """The client CPU per frame that leaves ``goal`` reachable: S / (S + C) >= goal."""
    return server_ms * (1.0 - goal) / goal


def _stages(cpu: dict[str, float]) -> str:
    top = sorted(((v, k) for k, v in cpu.items() if k != "total"), reverse=True)
    return ", ".join(f"{k} {v:.1f}" for v, k in top if v >= 0.05)


def video_figure(bench: Bench, denominator: Side) -> tuple[Side, Side, str]:
    """``denominator``: the served model-only peak."""
    if bench.video is None:
        raise KeyError("video")
    video = bench.video
    how = " (client letterbox, raw network: the ensemble's results)" if "--raw" in video.flags else ""
    notes = [f"`{' '.join(('percept video', *video.flags))}`{how}"]
    if bench.video_ensemble is not None:
        fps = bench.video_ensemble.fps
        notes.append(f"through the `perception` ensemble (the default): {fps:.1f} frames/s")
    if bench.video_no_mp4 is not None:
        notes.append(f"without the annotated MP4 (--no-video): {bench.video_no_mp4.fps:.1f} frames/s")
    if "ensemble" in bench.sweeps:
        step = bench.sweeps["ensemble"].steps[0]
        notes.append(
            f"the `perception` ensemble alone at c={step.concurrency}: {step.throughput:.1f} frames/s"
        )
    cpu = video.summary.get("cpu_ms_per_frame")
    cores = bench.machine_start.cores if bench.machine_start else 0
    if cpu and cores and denominator[1] > 0:
        s = 1000.0 * cores / denominator[1]
        c = float(cpu["total"])
        notes.append(
            f"where the time goes: client CPU per frame C = {c:.1f} ms ({_stages(cpu)}; "
            f"summary.json cpu_ms_per_frame), server CPU per frame at the model-only peak S = {cores} "
            f"cores / {denominator[1]:.1f} frames/s = {s:.1f} ms (the harness's CPU and any other load "
            f"counted in it); on shared cores the ratio cannot pass "
            f"S / (S + C) = {ceiling(s, c):.2f}; {GOAL:.2f} needs C <= {client_budget_ms(s):.1f} ms"
        )
        no_mp4 = bench.video_no_mp4.summary.get("cpu_ms_per_frame") if bench.video_no_mp4 else None
        if no_mp4:
            c2 = float(no_mp4["total"])
            notes.append(f"--no-video: C = {c2:.1f} ms, ceiling {ceiling(s, c2):.2f}")
    return ("percept video", video.fps, "frames/s"), denominator, "; ".join(notes)
