"""Read the spec (and provenance) an exported ONNX file carries in its ``metadata_props``.

The serving side must not import ``exporters``; the export stage writes ``ModelSpec.to_json()``
under :data:`serving.spec.SPEC_KEY` and its provenance under :data:`serving.spec.PROVENANCE_KEY`, and
this module is the one reader of both (the exporters use it too), with ``onnx`` when installed and
ONNX Runtime otherwise (the ``server`` extra has ONNX Runtime but not ``onnx``).
"""

from __future__ import annotations

import json
from pathlib import Path

from serving.errors import ServingError, SpecError
from serving.spec import PROVENANCE_KEY, SPEC_KEY, ModelSpec


def read_metadata(path: str | Path) -> dict[str, str]:
    """All ``metadata_props`` of an ONNX file as a dict."""
    path = Path(path)
    if not path.is_file():
        raise ServingError(f"ONNX file {path} does not exist")
    try:
        import onnx
    except ImportError:
        return _read_metadata_ort(path)
    else:
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as exc:
            raise ServingError(f"{path} is not a readable ONNX file: {exc}") from exc
        return {p.key: p.value for p in model.metadata_props}


def _read_metadata_ort(path: Path) -> dict[str, str]:
    from serving.ort_session import create_session

    session = create_session(path)
    return dict(session.get_modelmeta().custom_metadata_map)


def read_spec(path: str | Path) -> ModelSpec:
    """The ModelSpec stored in an exported ONNX file (key :data:`~serving.spec.SPEC_KEY`)."""
    meta = read_metadata(path)
    if SPEC_KEY not in meta:
        raise ServingError(
            f"{path}: no {SPEC_KEY!r} in the ONNX metadata; export it with `percept export` "
            "or `percept import-onnx`"
        )
    try:
        return ModelSpec.from_dict(json.loads(meta[SPEC_KEY]))
    except (ValueError, SpecError) as exc:
        raise ServingError(f"{path}: unreadable {SPEC_KEY!r} metadata: {exc}") from exc


def read_provenance(path: str | Path) -> dict:
    """The export provenance an ONNX file carries (``{}`` when it has none)."""
    text = read_metadata(path).get(PROVENANCE_KEY)
    return json.loads(text) if text else {}
