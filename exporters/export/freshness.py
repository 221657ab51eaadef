"""Is this export current? One cache key, recorded in the ONNX provenance at export, one check.

The key hashes everything that shapes the exported graph: the network name and asked input size,
the checkpoint file's bytes (or the random-init seed without one), the ONNX stage's options (batch
profile, opset, simplification) and the source files of ``exporters/networks``, ``exporters/export``
and ``serving/spec.py``. Every package file is hashed, not a hand-picked list: a file missed gives a
stale ONNX, an extra file only costs an export. The demo, the bench and the tests' cached fixtures
all reuse an ONNX file only when :func:`export_is_current` says so.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from pathlib import Path

from exporters.export.options import OnnxOptions

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
GRAPH_SOURCES = ("exporters/networks", "exporters/export", "serving/spec.py")
KEY = "export_key"


@functools.cache
def graph_sources_hash() -> str:
    """sha256 over the source files that shape the exported graph (path and bytes of each)."""
    h = hashlib.sha256()
    for source in GRAPH_SOURCES:
        path = ROOT / source
        for f in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            h.update(f.relative_to(ROOT).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def export_key(
    network: str, options: OnnxOptions | None = None, input_hw: tuple[int, int] | None = None, seed: int = 0
) -> str:
    """The cache key of exporting ``network`` with ``options`` (its checkpoint, profile, opset)."""
    from exporters.export.onnx_export import file_sha256

    options = options or OnnxOptions()
    checkpoint = options.checkpoint
    document = {
        "network": network,
        "input_hw": list(input_hw) if input_hw is not None else None,
        "checkpoint_sha256": file_sha256(Path(checkpoint)) if checkpoint is not None else None,
        "seed": seed if checkpoint is None else None,  # the seed only matters for a random init
        "batch_profile": options.batch_profile.as_dict(),
        "opset": options.opset,
        "simplify": options.simplify,
        "sources": graph_sources_hash(),
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def export_is_current(
    path: str | Path,
    network: str,
    options: OnnxOptions | None = None,
    input_hw: tuple[int, int] | None = None,
    seed: int = 0,
) -> bool:
    """True when ``path`` is an ONNX file exported from exactly these inputs by these sources."""
    from serving.onnx_meta import read_provenance

    path = Path(path)
    if not path.is_file():
        return False
    try:
        recorded = read_provenance(path).get(KEY)
    except Exception as exc:  # unreadable or foreign file: not current, export again
        log.info("%s: no readable provenance (%s): exporting again", path, exc)
        return False
    return recorded == export_key(network, options, input_hw, seed)


def export_if_stale(
    network: str,
    path: str | Path,
    options: OnnxOptions | None = None,
    input_hw: tuple[int, int] | None = None,
    seed: int = 0,
    provenance_extra: dict | None = None,
    fresh: bool = False,
) -> Path:
    """The ONNX stage alone (no verification), skipped when ``path`` is current; returns ``path``.

    For the bench and the tests' cached exports; `percept export` and the demo verify as well
    (:func:`exporters.export.run.run_export`).
    """
    from exporters.export.onnx_export import export_onnx
    from exporters.export.run import load_network

    path = Path(path)
    options = options or OnnxOptions()
    if not fresh and export_is_current(path, network, options, input_hw, seed):
        log.info("reusing %s (current)", path)
        return path
    model = load_network(network, options.checkpoint, input_hw, seed)
    extra = {**(provenance_extra or {}), KEY: export_key(network, options, input_hw, seed)}
    return export_onnx(model, path, options, provenance_extra=extra)
