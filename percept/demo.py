"""`make demo` (python -m percept.demo): the whole path of a frame, end to end, on this machine.

1. export the default networks (cam-n, fusion-n; shipped weights when present) to verified ONNX;
2. build a Triton model repository from them;
3. start the real tritonserver (serving.launcher);
4. render a synthetic drive: an MP4 and a KITTI-style sequence with LiDAR;
5. run `percept video` on both (camera ensemble on the MP4, fusion ensemble on the sequence);
6. stop the server (always), print where the outputs are and the measured frames per second.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import time
from pathlib import Path

import typer

log = logging.getLogger(__name__)

NETWORKS = ("cam-n", "fusion-n")
app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


class _Steps:
    def __init__(self, total: int) -> None:
        self.total = total
        self.n = 0
        self.t0 = time.perf_counter()

    def start(self, text: str) -> None:
        self.n += 1
        typer.secho(f"[{self.n}/{self.total}] {text}  (t={time.perf_counter() - self.t0:.0f}s)", bold=True)


def export_network(network: str, out: Path, verify_scenes: int, fresh: bool) -> Path:
    """Export one network to ``out/model.onnx`` (reused while it is current: same weights, options
    and graph-shaping sources, see exporters.export.freshness)."""
    from exporters.export.freshness import export_is_current
    from exporters.export.options import ExportOptions, VerifyOptions
    from exporters.export.run import run_export
    from exporters.weights import shipped_checkpoint

    checkpoint = shipped_checkpoint(network)
    options = ExportOptions(
        network=network, out_dir=out, checkpoint=checkpoint, verify=VerifyOptions(scenes=verify_scenes)
    )
    onnx = out / "model.onnx"
    if not fresh and export_is_current(onnx, network, options.onnx, options.input_hw, options.seed):
        typer.echo(f"      reusing {onnx} (pass --fresh to export again)")
        return onnx
    if checkpoint is None:
        typer.secho(f"      no shipped checkpoint for {network}: exporting a seeded random init", fg="yellow")
    result = run_export(options, progress=True)
    for line in result.lines():
        typer.echo(f"      {line}")
    return Path(result.onnx)


def save_preview(video: Path, png: Path) -> Path | None:
    """The middle frame of the annotated video as a PNG, to look at without a video player."""
    import cv2

    cap = cv2.VideoCapture(str(video))
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.set(cv2.CAP_PROP_POS_FRAMES, max(count // 2, 0))
    ok, frame = cap.read()
    cap.release()
    if not ok:
        return None
    cv2.imwrite(str(png), frame)
    return png


@app.command()
def demo(
    out: Path = typer.Option(Path("demo_out"), "--out", help="Everything the demo writes goes here."),
    seconds: float = typer.Option(10.0, "--seconds", help="Length of the synthetic drive."),
    seed: int = typer.Option(7, "--seed", help="World seed of the drive."),
    verify_scenes: int = typer.Option(
        20, "--verify-scenes", help="Validation scenes each export verifies on."
    ),
    fresh: bool = typer.Option(False, "--fresh", help="Export again even if the ONNX files exist."),
    window: int = typer.Option(8, "--window", help="Requests in flight per input."),
) -> None:
    """Export, serve, render a drive, process it with `percept video`, and report frames per second."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    # `percept demo` (the root callback set INFO) prints what `make demo` does; `percept -v demo` all
    if root.level != logging.DEBUG:
        root.setLevel(logging.WARNING)
        logging.getLogger("exporters.export.trt_compat").setLevel(logging.INFO)  # its one-line summary
    from clients.options import ClientOptions
    from clients.video import VIDEO_RETRY, VideoOptions, run_video
    from serving.errors import MissingDependencyError
    from serving.launcher import ServerOptions, TritonServer
    from serving.repository import build_repository
    from world.drive import DriveOptions, record_drive

    if importlib.util.find_spec("torch") is None:  # before minutes of work: the demo exports the networks
        raise MissingDependencyError("torch", "export")
    steps = _Steps(7)
    out.mkdir(parents=True, exist_ok=True)
    onnx_paths: list[str | Path] = []
    for network in NETWORKS:
        steps.start(f"export {network} -> {out / 'artifacts' / network}")
        onnx_paths.append(export_network(network, out / "artifacts" / network, verify_scenes, fresh))

    steps.start(f"build the model repository -> {out / 'model_repository'}")
    names = build_repository(onnx_paths, out / "model_repository")
    typer.echo(f"      models: {', '.join(names)}")

    steps.start(f"render a {seconds:g}-second synthetic drive (MP4 + KITTI-style sequence with LiDAR)")
    drive = DriveOptions(seconds=seconds, seed=seed)
    video_path, kitti_path = out / "drive" / "drive.mp4", out / "drive" / "drive_kitti"
    frames = record_drive(drive, video=video_path, kitti=kitti_path, overwrite=True)
    typer.echo(f"      {frames} frames at {drive.hw[0]}x{drive.hw[1]}: {video_path}, {kitti_path}")

    steps.start("start tritonserver (python backend running ONNX Runtime)")
    server = TritonServer(ServerOptions(out / "model_repository", log_file=out / "tritonserver.log"))
    try:
        t = time.perf_counter()
        server.start()
        typer.echo(
            f"      ready in {time.perf_counter() - t:.1f}s at grpc {server.grpc_url} (log {server.log_path})"
        )
        steps.start("percept video on the MP4 (camera ensemble) and the KITTI sequence (fusion ensemble)")
        results = out / "results"
        options = VideoOptions(
            out_dir=results,
            client=ClientOptions(url=server.grpc_url, timeout_s=120.0, retry=VIDEO_RETRY),
            window=window,
            parallel_inputs=2,
        )
        report = run_video([str(video_path), str(kitti_path)], options)
    finally:
        steps.start("stop tritonserver")
        server.stop()

    typer.echo("")
    for r in report.results:
        folder = results / r.source.name
        typer.secho(
            f"{r.source.name:12s} {r.status}: {r.frames} frames, {r.errors} errors, {r.fps:.2f} frames/s",
            fg="green" if r.status == "complete" and not r.errors else "red",
        )
        typer.echo(f"  annotated video: {folder / 'annotated.mp4'}")
        typer.echo(f"  per-frame JSONL: {folder / 'results.jsonl'}")
        typer.echo(f"  summary:         {folder / 'summary.json'}")
        preview = save_preview(folder / "annotated.mp4", folder / "preview.png")
        if preview:
            typer.echo(f"  preview frame:   {preview}")
    typer.secho(
        f"processed {report.frames_processed} frames in {report.seconds:.1f}s: "
        f"{report.fps:.2f} frames/s overall (both inputs at once), total demo time "
        f"{time.perf_counter() - steps.t0:.0f}s",
        bold=True,
    )
    (out / "demo.json").write_text(
        json.dumps(
            {
                "frames": report.frames_processed,
                "seconds": round(report.seconds, 3),
                "fps": round(report.fps, 3),
                "per_input_fps": {r.source.name: round(r.fps, 3) for r in report.results},
                "demo_seconds": round(time.perf_counter() - steps.t0, 1),
            },
            indent=2,
        )
        + "\n"
    )
    raise typer.Exit(report.exit_code)


def main() -> None:
    from percept.quiet import quiet_third_party
    from serving.errors import PerceptionError

    quiet_third_party()
    try:
        app()
    except PerceptionError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise SystemExit(1) from exc


if __name__ == "__main__":
    main()
