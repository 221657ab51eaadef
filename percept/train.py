"""`percept train`: train a registered network on the synthetic world and write its checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from serving.spec import DEFAULT_INPUT_HW


def train(
    network: str = typer.Argument(..., help="Registered network, e.g. cam-n or fusion-n."),
    out: Path = typer.Option(None, help="Checkpoint to write (default: exporters/weights/<network>.pt)."),
    workdir: Path = typer.Option(
        None, help="Resumable training state (default: /tmp/percept-train/<network>)."
    ),
    steps: int = typer.Option(3000, help="Optimiser steps (fewer when --minutes runs out first)."),
    minutes: float = typer.Option(
        None, help="Wall-time budget; the LR schedule follows whichever ends first."
    ),
    batch_size: int = typer.Option(8, help="Images per step."),
    lr: float = typer.Option(2e-3, help="Peak AdamW learning rate."),
    height: int = typer.Option(DEFAULT_INPUT_HW[0], help="Input height (multiple of 32)."),
    width: int = typer.Option(DEFAULT_INPUT_HW[1], help="Input width (multiple of 32)."),
    seed: int = typer.Option(0, help="Seed of the initialisation, the scene pool and the batches."),
    pool: int = typer.Option(1200, help="Pre-rendered training scenes (augmented at every draw)."),
    cache_dir: Path = typer.Option(Path("/tmp/percept-pool"), help="Where the rendered pool is cached."),
    init_from: Path = typer.Option(None, help="Start from the matching weights of this checkpoint."),
    train_only: list[str] = typer.Option(
        None,
        "--train-only",
        help="Train only this module (repeatable, e.g. depth_head); the rest stays frozen as loaded.",
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue from the state in --workdir."),
    save_every: int = typer.Option(100, help="Write the resumable state every N steps."),
    eval_scenes: int = typer.Option(200, help="Validation scenes scored at the end (0 = skip)."),
    threads: int = typer.Option(2, help="torch CPU threads."),
    seg_weight: float = typer.Option(2.0, help="Segmentation loss weight."),
    depth_weight: float = typer.Option(1.0, help="Depth loss weight."),
    det_weight: float = typer.Option(1.0, help="Detection loss weight."),
    silog_lambda: float = typer.Option(0.25, help="SILog lambda (0: log-RMSE; 1: fully scale-invariant)."),
) -> None:
    """Train NETWORK (multi-task loss over world scenes), evaluate it and write checkpoint + metadata."""
    from exporters.training import LossWeights, TrainOptions, train_and_ship
    from exporters.weights import WEIGHTS_DIR

    options = TrainOptions(
        network=network,
        out=out or WEIGHTS_DIR / f"{network}.pt",
        workdir=workdir or Path("/tmp/percept-train") / network,
        input_hw=(height, width),
        steps=steps,
        time_budget_min=minutes,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        pool_size=pool,
        cache_dir=cache_dir,
        init_from=init_from,
        train_only=tuple(train_only or ()),
        resume=resume,
        save_every=save_every,
        eval_scenes=eval_scenes,
        threads=threads,
        weights=LossWeights(
            detection=det_weight, segmentation=seg_weight, depth=depth_weight, silog_lambda=silog_lambda
        ),
    )
    meta = train_and_ship(options)
    typer.echo(json.dumps(meta.get("validation", {}), indent=2))
    typer.echo(f"wrote {options.out}")
