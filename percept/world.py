"""`percept world`: render drives of the synthetic world and measure it. Parses and calls the library."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from serving.errors import SpecError
from serving.spec import DEFAULT_INPUT_HW

DEFAULT_SIZE = "{}x{}".format(*DEFAULT_INPUT_HW)  # HEIGHTxWIDTH

app = typer.Typer(
    name="world",
    help=(
        "The synthetic driving world the default networks are trained on: a pinhole camera over roads "
        "with curvature, slope and lane markings, cars, trucks and pedestrians as shaded 3D boxes "
        "4-80 m away, a 32-beam rotating LiDAR, and ground truth for every head (2D boxes, "
        "drivable/lane segmentation, metric depth). Deterministic per seed.\n\n"
        "Examples:\n\n"
        "  percept world render --seconds 5 --out drive.mp4\n\n"
        "  percept world render --seconds 10 --out drive.mp4 --kitti drive_kitti --seed 3\n\n"
        "  percept world preview --seed 3 --out scene.png\n\n"
        "  percept world stats --seeds 200"
    ),
    no_args_is_help=True,
)


def parse_size(text: str) -> tuple[int, int]:
    """'HEIGHTxWIDTH' -> (height, width), e.g. DEFAULT_SIZE."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise SpecError(f"size must be HEIGHTxWIDTH like {DEFAULT_SIZE}, got {text!r}") from exc
    return h, w


@app.command()
def render(
    out: Path | None = typer.Option(None, "--out", help="MP4 video to write (mp4v)."),
    seconds: float = typer.Option(5.0, "--seconds", help="Length of the drive."),
    seed: int = typer.Option(0, "--seed", help="World seed: the same seed gives the same drive."),
    fps: float = typer.Option(10.0, "--fps", help="Frames per second (KITTI logs are 10)."),
    size: str = typer.Option(DEFAULT_SIZE, "--size", help="Frame HEIGHTxWIDTH."),
    kitti: Path | None = typer.Option(
        None, "--kitti", help="Also write a KITTI-style folder: image_2/, velodyne/, calib.txt, times.txt."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
) -> None:
    """Render a drive with ego-motion along the road (traffic moves too) to a video and/or KITTI folder."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from world.drive import DriveOptions, record_drive

    if out is None and kitti is None:
        raise SpecError("give --out VIDEO.mp4 and/or --kitti DIR")
    options = DriveOptions(seconds=seconds, fps=fps, hw=parse_size(size), seed=seed)
    columns = (TextColumn("rendering"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task("frames", total=options.num_frames)
        count = record_drive(options, out, kitti, overwrite, on_frame=lambda _: progress.advance(task))
    for path in (out, kitti):
        if path is not None:
            typer.echo(f"wrote {count} frames ({options.hw[0]}x{options.hw[1]}, {fps:g} fps) to {path}")


@app.command()
def preview(
    out: Path = typer.Option(..., "--out", help="PNG to write."),
    seed: int = typer.Option(0, "--seed", help="World seed."),
    size: str = typer.Option(DEFAULT_SIZE, "--size", help="Frame HEIGHTxWIDTH."),
) -> None:
    """Picture one scene with its ground truth: boxes, segmentation, depth and projected LiDAR."""
    import cv2

    from world import render_scene
    from world.preview import preview as draw

    if out.suffix.lower() != ".png":
        raise SpecError(f"{out}: the preview is written as a .png file")
    scene = render_scene(seed, parse_size(size), lidar=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), draw(scene)):
        raise SpecError(f"{out}: could not write the PNG")
    points = 0 if scene.points is None else len(scene.points)
    typer.echo(f"wrote {out}: {len(scene.boxes)} boxes, {points} LiDAR points")


@app.command()
def stats(
    seeds: int = typer.Option(200, "--seeds", help="Scenes to render (seeds 0..N-1)."),
    size: str = typer.Option(DEFAULT_SIZE, "--size", help="Frame HEIGHTxWIDTH."),
    as_json: Path | None = typer.Option(None, "--json", help="Also write the numbers to this JSON file."),
) -> None:
    """Measure rendering speed (scenes/s with and without LiDAR) and the ground truth's make-up."""
    from rich.progress import Progress

    from world.stats import measure

    if seeds < 1:
        raise SpecError(f"--seeds must be >= 1, got {seeds}")
    with Progress(transient=True) as progress:
        task = progress.add_task("rendering", total=seeds + max(1, seeds // 4))
        result = measure(seeds, parse_size(size), on_scene=lambda: progress.advance(task))
    h, w = result.hw
    typer.echo(f"scenes at {h}x{w}, seeds 0..{seeds - 1}")
    typer.echo(f"  camera only      {result.scenes_per_s:7.1f} scenes/s (CPU time, one core)")
    typer.echo(f"  camera + LiDAR   {result.scenes_per_s_lidar:7.1f} scenes/s")
    typer.echo(f"  camera, wall     {result.wall_scenes_per_s:7.1f} scenes/s")
    typer.echo(f"  boxes            {result.boxes} ({result.boxes_per_scene:.1f} per scene)")
    typer.echo(f"  small (<32x32)   {result.small_box_share:.3f} of boxes")
    typer.echo(f"  occluded         {result.occluded_share:.3f} of boxes")
    typer.echo("  classes          " + ", ".join(f"{k} {v:.2f}" for k, v in result.class_share.items()))
    typer.echo(f"  LiDAR points     {result.points_per_scene:.0f} per scene")
    typer.echo(f"  drivable / lane  {result.drivable_share:.3f} / {result.lane_share:.4f} of pixels")
    if as_json is not None:
        as_json.write_text(json.dumps(result.as_dict(), indent=2) + "\n")
