"""`percept export` and `percept import-onnx`: parse arguments, build options, call the library."""

from __future__ import annotations

from pathlib import Path

import typer

from serving.spec import DEFAULT_INPUT_HW


def export(
    network: str = typer.Argument(..., help="Registered network, e.g. cam-n, fusion-n."),
    out: Path = typer.Option(..., "--out", help="Output folder (model.onnx, report.json, engines)."),
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", help="Weights; default: the shipped checkpoint of the network when present."
    ),
    random_init: bool = typer.Option(False, "--random-init", help="Export a seeded random init, no weights."),
    seed: int = typer.Option(0, "--seed", help="Seed of --random-init."),
    size: str | None = typer.Option(
        None, "--size", help="Input HEIGHTxWIDTH, multiples of 32 ({}x{}).".format(*DEFAULT_INPUT_HW)
    ),
    min_batch: int = typer.Option(1, "--min-batch"),
    opt_batch: int = typer.Option(4, "--opt-batch"),
    max_batch: int = typer.Option(8, "--max-batch"),
    engine: str | None = typer.Option(
        None, "--engine", help="onnx (default) | tensorrt (TensorRT adds an engine)."
    ),
    precision: str = typer.Option(
        "fp32",
        "--precision",
        help="fp32 | fp16 | int8; fp16/int8 name the engine: tensorrt (an engine) or onnx (model.<p>.onnx).",
    ),
    verify_scenes: int = typer.Option(100, "--verify-scenes", help="Validation scenes to verify on."),
    verify_batch: int = typer.Option(4, "--verify-batch"),
    calibration: str | None = typer.Option(
        None, "--calibration", help="INT8 calibration data: 'world' or a folder of images / KITTI sequence."
    ),
    calibration_images: int | None = typer.Option(
        None,
        "--calibration-images",
        help="Calibration frames; default 512 for TensorRT (GPU), 128 for the INT8 ONNX "
        "(onnxruntime calibrates on the CPU).",
    ),
    calibration_method: str = typer.Option(
        "percentile",
        "--calibration-method",
        help="INT8 ONNX (QDQ): percentile (99.99, measured closer to FP32 on cam-n) | entropy.",
    ),
    calibration_cache: Path | None = typer.Option(
        None, "--calibration-cache", help="Default: OUT/calibration.cache"
    ),
    workspace_mib: int = typer.Option(2048, "--workspace-mib", help="TensorRT workspace limit."),
    timing_cache: Path | None = typer.Option(None, "--timing-cache", help="Default: OUT/timing.cache"),
    opset: int = typer.Option(18, "--opset", help="ONNX opset (>= 17)."),
    print_docker: bool = typer.Option(
        False,
        "--print-docker",
        help="With --engine tensorrt: print the docker command that builds the engine inside the NGC "
        "image whose TensorRT the Triton image runs, and exit.",
    ),
) -> None:
    """Export a registered network to a verified ONNX model (and optionally a TensorRT engine)."""
    from exporters.export.options import (
        ONNX_CALIBRATION_IMAGES,
        BatchProfile,
        CalibrationOptions,
        ExportOptions,
        OnnxOptions,
        TensorRTOptions,
        VerifyOptions,
        parse_size,
    )
    from exporters.networks import get_config
    from serving.errors import SpecError

    get_config(network)  # unknown network: one line, before anything heavy
    input_hw = parse_size(size) if size else None
    profile = BatchProfile(min_batch, opt_batch, max_batch)
    if random_init and checkpoint is not None:
        raise SpecError("--checkpoint and --random-init exclude each other")
    notice = None
    if checkpoint is None and not random_init:
        from exporters.weights import shipped_checkpoint

        checkpoint = shipped_checkpoint(network)
        if checkpoint is None:
            notice = f"no shipped checkpoint for {network}: exporting a random init (seed {seed})"
    if engine is None and precision != "fp32":
        raise SpecError(
            f"precision {precision} needs --engine tensorrt (an engine) or --engine onnx "
            f"(an {precision.upper()} ONNX beside the FP32 one): say which"
        )
    engine = engine or "onnx"
    trt = onnx_calib = None
    if engine == "onnx" and precision == "int8" and calibration is not None:
        onnx_calib = CalibrationOptions(
            source=calibration,
            images=calibration_images or ONNX_CALIBRATION_IMAGES,
            batch=verify_batch,
            method=calibration_method,
        )
    elif engine == "tensorrt":
        calib = None
        if calibration is not None:
            calib = CalibrationOptions(
                source=calibration,
                images=calibration_images or CalibrationOptions.images,
                batch=opt_batch,  # TensorRT calibrates at the profile's opt shape
                cache=calibration_cache or out / "calibration.cache",
            )
        trt = TensorRTOptions(
            profile=profile,
            precision=precision,
            workspace_mib=workspace_mib,
            calibration=calib,
            timing_cache=timing_cache or out / "timing.cache",
        )
    elif calibration is not None:
        typer.echo("--calibration is only used with --precision int8", err=True)
    options = ExportOptions(
        network=network,
        out_dir=out,
        checkpoint=checkpoint,
        input_hw=input_hw,
        profile=profile,
        engine=engine,
        precision=precision,
        verify=VerifyOptions(scenes=verify_scenes, batch=verify_batch),
        onnx=OnnxOptions(opset=opset),
        tensorrt=trt,
        seed=seed,
        calibration=onnx_calib,
    )
    if print_docker:
        if engine != "tensorrt":
            raise SpecError("--print-docker needs --engine tensorrt")
        typer.echo(_docker_command(locals_for_docker(locals())))
        return
    if engine == "tensorrt":
        from exporters.export.tensorrt import import_tensorrt

        import_tensorrt()
    if notice:  # only once every option is known to be good
        typer.echo(notice, err=True)
    from exporters.export.run import run_export

    result = run_export(options, progress=True)
    for line in result.lines():
        typer.echo(line)
    extra = [p for p in (result.reduced, result.engine) if p is not None]
    typer.echo(f"wrote {result.onnx}" + "".join(f" and {p}" for p in extra) + f", {result.report}")


_DOCKER_FLAGS = (
    ("size", "--size"),
    ("min_batch", "--min-batch"),
    ("opt_batch", "--opt-batch"),
    ("max_batch", "--max-batch"),
    ("precision", "--precision"),
    ("verify_scenes", "--verify-scenes"),
    ("verify_batch", "--verify-batch"),
    ("calibration", "--calibration"),
    ("calibration_images", "--calibration-images"),
    ("calibration_cache", "--calibration-cache"),
    ("workspace_mib", "--workspace-mib"),
    ("timing_cache", "--timing-cache"),
    ("opset", "--opset"),
    ("checkpoint", "--checkpoint"),
    ("seed", "--seed"),
)


def locals_for_docker(values: dict) -> dict:
    return {k: values[k] for k in ("network", "out", "random_init", *(n for n, _ in _DOCKER_FLAGS))}


def _docker_command(values: dict) -> str:
    """The same export, run inside the NGC TensorRT image (exporters.export.tensorrt_plan.docker_command)."""
    from exporters.export.tensorrt_plan import docker_command

    repo_root = Path(__file__).resolve().parents[1]

    def inside(value) -> str:  # the repository is mounted at /opt/perception-serving
        path = Path(str(value))
        if path.is_absolute() and repo_root in path.resolve().parents:
            return "/opt/perception-serving/" + path.resolve().relative_to(repo_root).as_posix()
        return str(value)

    args = [values["network"], "--out", str(values["out"]), "--engine", "tensorrt"]
    for name, flag in _DOCKER_FLAGS:
        if values[name] is not None:
            args += [flag, inside(values[name])]
    if values["random_init"]:
        args.append("--random-init")
    return docker_command(args, repo_root, Path.cwd(), Path(values["out"]))


def import_onnx(
    model: Path = typer.Argument(..., help="The ONNX file to import (e.g. a YOLOP export)."),
    heads: Path = typer.Option(..., "--heads", help="YAML head spec describing the file's tensors."),
    out: Path = typer.Option(..., "--out", help="Output folder (model.onnx, report.json)."),
    verify_scenes: int = typer.Option(20, "--verify-scenes", help="World scenes to verify on."),
    verify_batch: int = typer.Option(1, "--verify-batch"),
    min_batch: int = typer.Option(1, "--min-batch"),
    opt_batch: int = typer.Option(1, "--opt-batch"),
    max_batch: int = typer.Option(8, "--max-batch"),
    images: Path | None = typer.Option(
        None,
        "--images",
        help="A folder of your own images: run the imported model on them (letterboxed as served) and "
        "write OUT/preview/*.jpg, preview.md and preview.json (class shares, detections, depth range) "
        "with warnings where a head looks mis-specified.",
    ),
    preview_images: int = typer.Option(16, "--preview-images", help="At most this many images of --images."),
    strict: bool = typer.Option(
        False, "--strict", help="With --images: a plausibility warning fails the import (for CI)."
    ),
) -> None:
    """Bring your own ONNX: validate it against a head spec, add the in-graph steps, verify, and
    (--images) show the heads on your own images."""
    from exporters.export.import_onnx import ImportOptions, PreviewOptions, run_import
    from exporters.export.options import BatchProfile, VerifyOptions
    from serving.errors import SpecError

    if strict and images is None:
        raise SpecError("--strict checks the preview: give --images DIR")
    options = ImportOptions(
        model=model,
        heads=heads,
        out_dir=out,
        profile=BatchProfile(min_batch, opt_batch, max_batch),
        verify=VerifyOptions(scenes=verify_scenes, batch=verify_batch),
        preview=None if images is None else PreviewOptions(images, strict=strict, max_images=preview_images),
    )
    from clients.video.preview import draw_network_outputs

    result = run_import(options, progress=True, draw=draw_network_outputs)
    for line in result.lines():
        typer.echo(line)
    extra = f", {result.preview_md}" if result.preview is not None else ""
    typer.echo(f"wrote {result.onnx}, {result.report}{extra}")


def register(app: typer.Typer) -> None:
    app.command("export")(export)
    app.command("import-onnx")(import_onnx)
