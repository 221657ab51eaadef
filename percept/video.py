"""`percept video INPUT... --out DIR`: batch processing of videos, image folders and KITTI-style
sequences.

Only parses arguments and calls clients.video.run_video; heavy imports happen inside the command.
"""

from __future__ import annotations

from pathlib import Path

import typer

from percept.connection import ADMIN_KEY, CERT_CHAIN, HEADER, PRIVATE_KEY, ROOT_CERTS, TLS, connection

DEFAULT_IMAGE_FPS = 10.0  # clients.video.sources.DEFAULT_IMAGE_FPS (checked by a test; not imported: cv2)


def video(
    inputs: list[str] = typer.Argument(
        ...,
        help="Video files, image folders (one sequence each, natural order), folders of videos, globs, "
        "KITTI-style sequence folders.",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: one sub-folder per input."),
    backend: str = typer.Option("triton", help="'triton' (gRPC to a server) or 'local' (ONNX Runtime here)."),
    url: str = typer.Option("127.0.0.1:8001", help="Triton gRPC address host:port."),
    model: str = typer.Option(
        "perception",
        help="Model for video inputs: any served pipeline (its heads are read from the server), "
        "or a raw net with --raw.",
    ),
    fusion_model: str = typer.Option("perception_fusion", help="Model for KITTI (camera + LiDAR) inputs."),
    raw: bool = typer.Option(False, help="Letterbox and decode in the client against a raw network model."),
    onnx: Path | None = typer.Option(None, help="--backend local: camera model ONNX."),
    fusion_onnx: Path | None = typer.Option(None, help="--backend local: fusion model ONNX."),
    window: int = typer.Option(8, help="Requests in flight per input."),
    parallel: int = typer.Option(2, help="Inputs processed at once."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in --out."),
    no_video: bool = typer.Option(False, "--no-video", help="Skip the annotated MP4."),
    save_dense: bool = typer.Option(False, "--save-dense", help="Save seg/depth per frame as .npz."),
    save_frames: bool = typer.Option(
        False, "--save-frames", help="Save each annotated frame as a PNG too (frames/, named by the image)."
    ),
    fps: float = typer.Option(
        DEFAULT_IMAGE_FPS,
        "--fps",
        help="Frame rate of image folders: their timestamps and video (videos keep theirs).",
    ),
    save_maps: bool = typer.Option(
        False,
        "--save-maps",
        help="Keep each frame's maps losslessly in OUT/<input>/maps/ (class map PNG, FP16 depth bits in a "
        "16-bit PNG) for `percept compare` against another run.",
    ),
    max_frames: int | None = typer.Option(None, help="Process at most this many frames per input."),
    segment_frames: int = typer.Option(300, help="Annotated video committed every N frames (resume unit)."),
    timeout: float = typer.Option(60.0, help="Deadline of each request, seconds."),
    retries: int = typer.Option(8, help="Attempts per request while the server is unavailable."),
    root_certs: Path | None = ROOT_CERTS,
    private_key: Path | None = PRIVATE_KEY,
    cert_chain: Path | None = CERT_CHAIN,
    tls: bool = TLS,
    admin_key: str | None = ADMIN_KEY,
    header: list[str] = HEADER,
    shared_memory: bool = typer.Option(
        False, "--shared-memory", help="Send frames through system shared memory (server on this host)."
    ),
    progress: bool = typer.Option(True, help="Progress bars."),
    engine: str = typer.Option(
        "local", help="'local' (this process) or 'ray' (units over a pool of Ray actors, run.json)."
    ),
    ray_address: str | None = typer.Option(
        None,
        help="--engine ray: 'auto', host:port or ray://host:10001 of an existing cluster; "
        "none: a local Ray runtime with --workers CPUs.",
    ),
    workers: int = typer.Option(2, help="--engine ray: worker actors, each with its own channel or ORT."),
    shard_frames: int | None = typer.Option(
        None, help="--engine ray: cut inputs into units of this many frames (none: a unit per input)."
    ),
    num_gpus: float = typer.Option(0.0, help="--engine ray: GPUs each worker actor reserves."),
    max_attempts: int = typer.Option(3, help="--engine ray: tries of a unit before it is reported failed."),
) -> None:
    """Run every frame of every input through the perception model; write an annotated MP4, a JSONL
    of per-frame results and a summary JSON per input. A model that cannot take the inputs (not
    served, a raw network without --raw, a fusion pipeline for videos) is refused before the first
    frame. Exit code: 0 all complete; 1 an input failed (every frame of it failed included: its
    summary has the first error); 3 stopped because the server went away (run again with --resume);
    4 all complete but some frames failed (each recorded with its error in results.jsonl).

    With --engine ray the inputs (cut by --shard-frames) are units spread over --workers Ray actors;
    each unit is committed atomically and recorded in OUT/run.json, so the same command run again
    skips what is committed (no --resume needed); a unit whose worker died is retried."""
    from clients.options import ClientOptions, RetryPolicy
    from clients.stagecpu import describe
    from clients.video import VIDEO_RETRY, VideoOptions, run_video
    from clients.video.options import RayOptions
    from serving.errors import SpecError

    if ray_address is not None and engine != "ray":
        raise SpecError("--ray-address needs --engine ray")

    tls_options, headers = connection(tls, root_certs, private_key, cert_chain, admin_key, header)
    client = ClientOptions(
        url=url,
        model=model,
        raw=raw,
        timeout_s=timeout,
        retry=RetryPolicy(retries, VIDEO_RETRY.base_delay_s, VIDEO_RETRY.max_delay_s),
        tls=tls_options,
        headers=headers,
        shared_memory=shared_memory,
    )
    options = VideoOptions(
        out_dir=out,
        backend=backend,
        client=client,
        fusion_model=fusion_model,
        onnx=onnx,
        fusion_onnx=fusion_onnx,
        window=window,
        parallel_inputs=parallel,
        resume=resume,
        write_video=not no_video,
        save_dense=save_dense,
        save_frames=save_frames,
        image_fps=fps,
        save_maps=save_maps,
        max_frames=max_frames,
        segment_frames=segment_frames,
        progress=progress,
        engine=engine,
        ray=RayOptions(ray_address, workers, shard_frames, num_gpus=num_gpus, max_attempts=max_attempts),
    )
    report = run_video(inputs, options)
    for r in report.results:
        line = f"{r.status:11s} {r.source.name}: {r.frames} frames, {r.errors} errors"
        if r.processed:
            line += f", {r.fps:.1f} frames/s"
        if r.message:
            line += f" - {r.message}"
        colour = "red" if r.status != "complete" else "yellow" if r.errors else "green"
        typer.secho(line, fg=colour, err=True)
        if r.cpu_ms_per_frame:
            typer.echo(f"            {r.source.name}: {describe(r.cpu_ms_per_frame)}", err=True)
    typer.echo(
        f"{report.frames_processed} frames in {report.seconds:.1f}s ({report.fps:.2f} frames/s); "
        f"outputs in {out}"
    )
    raise typer.Exit(report.exit_code)
