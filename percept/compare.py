"""`percept compare BASELINE CANDIDATE INPUT... --out DIR`: the rollout gate.

Only parses arguments and calls clients.compare.run_compare; heavy imports happen inside the command.
"""

from __future__ import annotations

from pathlib import Path

import typer

from percept.connection import ADMIN_KEY, CERT_CHAIN, HEADER, PRIVATE_KEY, ROOT_CERTS, TLS, connection


def compare(
    baseline: str = typer.Argument(
        ...,
        help="The model in service: an ONNX file, a served model (with --url, or HOST:PORT/MODEL), "
        "or a `percept video --save-maps` run folder.",
    ),
    candidate: str = typer.Argument(..., help="The model to roll out, in any of the baseline's forms."),
    inputs: list[str] = typer.Argument(
        None, help="What `percept video` reads: video files, folders, globs, KITTI-style sequence folders."
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Report folder: report.md, report.json, plots/, gallery/."
    ),
    url: str | None = typer.Option(None, help="Triton gRPC address of a side given as a model name."),
    precision: str | None = typer.Option(
        None,
        help="Tolerance row of the bounds (fp32, fp16, int8, ...); default: the candidate ONNX's precision.",
    ),
    bounds: Path | None = typer.Option(None, "--bounds", help="YAML file overriding bounds of the row."),
    max_frames: int | None = typer.Option(None, help="Compare at most this many frames per input."),
    gallery: int = typer.Option(3, help="Worst frames drawn per head and input."),
    timeout: float = typer.Option(60.0, help="Deadline of each request to a served side, seconds."),
    root_certs: Path | None = ROOT_CERTS,
    private_key: Path | None = PRIVATE_KEY,
    cert_chain: Path | None = CERT_CHAIN,
    tls: bool = TLS,
    admin_key: str | None = ADMIN_KEY,
    header: list[str] = HEADER,
    scenes: int = typer.Option(
        0,
        help="Also compare on N world validation scenes and gate the metric deltas against their "
        "ground truth (d mAP50, d mIoU, d AbsRel).",
    ),
    progress: bool = typer.Option(True, help="Progress bars."),
    engine: str = typer.Option(
        "local",
        help="'ray': run each model side as `percept video --engine ray --save-maps` into OUT/runs/ "
        "(exactly once, resumable: run the same command again), then compare the two runs.",
    ),
    ray_address: str | None = typer.Option(None, help="--engine ray: as `percept video --ray-address`."),
    workers: int = typer.Option(2, help="--engine ray: worker actors."),
    shard_frames: int | None = typer.Option(
        None, help="--engine ray: frames per unit (none: a unit per input)."
    ),
) -> None:
    """Run both sides on the same decoded frames (and LiDAR points) and measure how the candidate
    agrees with the baseline, head by head, with no ground truth: detection matched / missing /
    extra per class, segmentation pixel agreement and class IoU, depth relative-error percentiles.
    Exit code: 0 within the bounds (one summary line), 1 a bound failed (one line naming the input,
    head, class and measure) or an input/side could not be used."""
    from clients.compare import CompareOptions, run_compare
    from clients.options import ClientOptions
    from clients.video.options import RayOptions

    tls_options, headers = connection(tls, root_certs, private_key, cert_chain, admin_key, header)
    client = ClientOptions(timeout_s=timeout, tls=tls_options, headers=headers)
    options = CompareOptions(
        baseline=baseline,
        candidate=candidate,
        out_dir=out,
        url=url,
        client=client,
        precision=precision,
        bounds=bounds,
        max_frames=max_frames,
        gallery=gallery,
        progress=progress,
        engine=engine,
        ray=RayOptions(ray_address, workers, shard_frames),
    )
    truth = None
    if scenes:
        # the glue of both sides lives here: clients may not import the model side's evaluator
        from clients.compare.scenes import GroundTruth
        from exporters.evaluation import Evaluator, validation_seeds

        truth = GroundTruth(tuple(validation_seeds(scenes)), Evaluator)
    elif not inputs:
        raise typer.BadParameter("give INPUTS, --scenes N, or both")
    report = run_compare(inputs or [], options, truth)
    typer.secho(report.line(), fg="green" if report.passed else "red")
    typer.echo(f"report: {out / 'report.md'}", err=True)
    raise typer.Exit(0 if report.passed else 1)
