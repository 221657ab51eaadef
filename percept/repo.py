"""`percept repo build`: write a Triton model repository from exported ONNX files.

Only parses arguments and calls serving.repository; heavy imports happen inside the command.
"""

from __future__ import annotations

from pathlib import Path

import typer

from serving.ensemble import FrameLimits  # light (no OpenCV): the flags' defaults are its defaults

_LIMITS = FrameLimits()
app = typer.Typer(help="Triton model repositories.", no_args_is_help=True)


@app.command("build")
def build(
    onnx: list[Path] = typer.Option(..., "--onnx", help="Exported ONNX file (repeat for several networks)."),
    out: Path = typer.Option(Path("model_repository"), "--out", "-o", help="Repository folder to write."),
    engine: str = typer.Option(
        "python", help="python (ONNX Runtime in Triton), onnxruntime or tensorrt_plan."
    ),
    max_batch_size: int = typer.Option(8, help="Largest batch the dynamic batcher forms."),
    max_queue_delay_us: int = typer.Option(
        0, help="Dynamic batcher's wait for more requests (µs); 0: batch what queued meanwhile."
    ),
    preferred_batch_size: list[int] = typer.Option([], help="Preferred batch size (repeatable)."),
    no_dynamic_batching: bool = typer.Option(
        False, "--no-dynamic-batching", help="No dynamic batcher on the network: each request runs alone."
    ),
    max_queue_size: int = typer.Option(64, help="Requests queued beyond this are rejected at once."),
    queue_timeout_us: int = typer.Option(5_000_000, help="A request queued longer is rejected (µs)."),
    instances: int = typer.Option(2, help="Instances of the network model."),
    frame_instances: int = typer.Option(2, help="Instances of each frame model (raw frame in, results out)."),
    decode_instances: int = typer.Option(1, help="Instances of each pipeline's decode step."),
    frame_graph: bool | None = typer.Option(
        None,
        "--frame-graph/--frame-opencv",
        help="The frame model runs the frame graph (letterbox + postprocess in ONNX; default for the "
        "onnxruntime / tensorrt_plan engines) or the network with OpenCV around it (python default).",
    ),
    threads: int = typer.Option(2, help="ONNX Runtime intra-op threads per network instance."),
    spin: bool = typer.Option(False, "--spin", help="Let ONNX Runtime threads busy-wait (dedicated hosts)."),
    max_pixels: int = typer.Option(
        _LIMITS.max_pixels, help="Largest frame (pixels) the decode step and frame model accept."
    ),
    min_side: int = typer.Option(_LIMITS.min_side, help="Smallest frame side (pixels) accepted."),
    max_points: int = typer.Option(_LIMITS.max_points, help="Most LiDAR points per request."),
    max_request_bytes: int = typer.Option(
        _LIMITS.max_request_bytes, help="Most bytes of input tensors per request (checked before decoding)."
    ),
    no_warmup: bool = typer.Option(False, "--no-warmup", help="Skip the network's warm-up request."),
    no_ensembles: bool = typer.Option(False, "--no-ensembles", help="Raw network models only."),
    link: bool = typer.Option(False, "--link", help="Symlink the ONNX/plan files instead of copying."),
    name: list[str] = typer.Option(
        [],
        "--name",
        help="NET=ENSEMBLE: the ensemble name of network NET (repeatable); default perception / "
        "perception_fusion for the first camera / fusion network with every head, NET_pipeline otherwise.",
    ),
) -> None:
    """Write config.pbtxt, model.py and the network files for each ONNX into OUT."""
    from serving.errors import ServingError
    from serving.model_config import BatchingOptions, RepositoryOptions
    from serving.repository import build_repository

    pairs = [n.partition("=") for n in name]
    if any(not net or not sep or not ens for net, sep, ens in pairs):
        raise ServingError(f"--name takes NET=ENSEMBLE, got {', '.join(name)}")
    options = RepositoryOptions(
        engine=engine,
        batching=BatchingOptions(
            max_batch_size=max_batch_size,
            max_queue_delay_us=max_queue_delay_us,
            preferred_batch_sizes=tuple(preferred_batch_size),
            max_queue_size=max_queue_size,
            queue_timeout_us=queue_timeout_us,
            dynamic=not no_dynamic_batching,
        ),
        network_instances=instances,
        frame_instances=frame_instances,
        decode_instances=decode_instances,
        frame_graph=frame_graph,
        intra_op_threads=threads,
        allow_spinning=spin,
        limits=FrameLimits(
            max_pixels=max_pixels,
            min_side=min_side,
            max_points=max_points,
            max_request_bytes=max_request_bytes,
        ),
        warmup=not no_warmup,
        ensembles=not no_ensembles,
        link=link,
        pipeline_names=tuple((net, ens) for net, _, ens in pairs),
    )
    names = build_repository(list(onnx), out, options)
    typer.echo(f"wrote {len(names)} models to {out}: {', '.join(names)}")
