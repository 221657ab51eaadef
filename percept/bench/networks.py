"""The networks under test: one model.onnx each, exported once and reused while its weights hold."""

from __future__ import annotations

from pathlib import Path

FUSED = "cam-n"
SINGLE_TASK = ("cam-n-det", "cam-n-seg", "cam-n-depth")


def export_networks(out: Path, names: tuple[str, ...], fresh: bool) -> dict[str, Path]:
    """model.onnx per network (shipped weights where they exist, else seeded random init).

    The verification stage is `percept export`'s job; timings do not depend on it, so the bench
    calls the ONNX stage alone.
    """
    from exporters.export.onnx_export import export_onnx
    from exporters.export.options import OnnxOptions
    from exporters.export.run import load_network

    paths = {}
    for name in names:
        path = out / name / "model.onnx"
        checkpoint = _shipped_checkpoint(name)
        if fresh or not _export_is_current(path, checkpoint):
            model = load_network(name, checkpoint, None, seed=0)
            export_onnx(model, path, OnnxOptions(checkpoint=checkpoint), provenance_extra={"bench_seed": 0})
        paths[name] = path
    return paths


def load_deploy_model(name: str):
    """The deploy wrapper that the ONNX of ``name`` was exported from (same weights), in eval mode."""
    from exporters.export.graph import build_deploy_model
    from exporters.export.run import load_network

    model = load_network(name, _shipped_checkpoint(name), None, seed=0)
    return build_deploy_model(model, model.spec).eval()


def weights_used(onnx: dict[str, Path]) -> dict[str, str]:
    from exporters.export.onnx_export import read_provenance

    out = {}
    for name, path in onnx.items():
        ckpt = read_provenance(path).get("checkpoint")
        out[name] = f"shipped {Path(ckpt).name}" if ckpt else "seeded random init"
    return out


def _export_is_current(path: Path, checkpoint: Path | None) -> bool:
    """An earlier bench export of the same weights (shipped checkpoint by hash, or random init)."""
    from exporters.export.onnx_export import file_sha256, read_provenance

    if not path.exists():
        return False
    try:
        prov = read_provenance(path)
    except Exception:  # unreadable or foreign file: export again
        return False
    return prov.get("checkpoint_sha256") == (file_sha256(checkpoint) if checkpoint else None)


def _shipped_checkpoint(name: str) -> Path | None:
    """The shipped checkpoint of ``name``, or None (random init is fine for timing)."""
    try:
        from exporters.weights import default_checkpoint

        path = Path(default_checkpoint(name))
    except Exception:  # no shipped weights for this network
        return None
    return path if path.exists() else None
