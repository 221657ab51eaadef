"""`percept eval`: score a network on the validation split with the torch-free metrics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer

from serving.spec import ModelSpec

# metric key -> (label, format); ap50_<cls> / iou_<cls> rows are added from the spec
_ROWS = (
    ("map50", "det mAP@0.5"),
    ("map50_95", "det mAP@0.5:0.95"),
    ("miou", "seg mIoU"),
    ("abs_rel", "depth AbsRel"),
    ("rmse", "depth RMSE (m)"),
    ("delta1", "depth delta<1.25"),
)


def eval_command(
    network: str = typer.Option(None, "--network", "-n", help="Registered network (e.g. cam-n)."),
    checkpoint: Path = typer.Option(None, help="Checkpoint for the torch backend (default: shipped)."),
    backend: str = typer.Option(
        "torch", help="torch (a checkpoint), onnx (an exported file) or triton (a served pipeline)."
    ),
    onnx: Path = typer.Option(None, "--onnx", help="The .onnx file for --backend onnx."),
    url: str = typer.Option("127.0.0.1:8001", help="--backend triton: the server's gRPC host:port."),
    model: str = typer.Option(
        "perception", help="--backend triton: the served pipeline (its spec is read from the server)."
    ),
    scenes: int = typer.Option(200, help="Validation scenes (the first N of the fixed split)."),
    json_out: Path = typer.Option(None, "--json", help="Also write the metrics to this JSON file."),
) -> None:
    """Evaluate a network (PyTorch checkpoint, ONNX file or served pipeline) on the fixed validation
    split; metrics for the heads it has."""
    from rich.table import Table

    from percept.console import report_console

    if backend == "triton":
        spec, metrics = evaluate_served(url, model, scenes)
    else:
        from exporters.evaluation.run import evaluate_model

        spec, metrics = evaluate_model(network, checkpoint, backend, onnx, num_scenes=scenes)
    source = f"triton {model}" if backend == "triton" else backend
    table = Table(title=f"{spec.name} on {scenes} validation scenes ({source})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [(k, label) for k, label in _ROWS if k in metrics]
    rows += [(f"ap50_{c}", f"AP@0.5 {c}") for c in spec.det_classes if f"ap50_{c}" in metrics]
    rows += [(f"iou_{c}", f"IoU {c}") for c in spec.seg_classes if f"iou_{c}" in metrics]
    for key, label in rows:
        v = metrics[key]
        table.add_row(label, "n/a" if math.isnan(v) else f"{v:.4f}")
    report_console().print(table)
    if json_out is not None:
        json_out.write_text(json.dumps({"network": spec.name, "backend": source, **metrics}, indent=2) + "\n")


def evaluate_served(url: str, model: str, num_scenes: int) -> tuple[ModelSpec, dict[str, float]]:
    """Score a served pipeline with the in-process evaluator. The glue lives here because it joins
    the two sides: clients (the served predictor) and exporters (the scorer) may not import each
    other."""
    from clients.evaluation import ServedPredictor
    from exporters.evaluation.run import evaluate_scenes

    with ServedPredictor(url, model) as predict:
        return predict.spec, evaluate_scenes(predict, predict.spec, num_scenes=num_scenes)
