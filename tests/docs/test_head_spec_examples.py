"""Every head spec written inline in the README and the docs loads with the importer's own loader.

The per-layout example files (docs/examples/head_specs/, included into docs/byom.md) are checked
more strictly, against a generated file of their layout, in
tests/exporters/export/test_head_spec_examples.py."""

from __future__ import annotations

import re

import numpy as np
import yaml

from exporters.export.head_spec import load_head_spec
from tests.docs.commands import ROOT

_YAML = re.compile(r"^```yaml\n(.*?)^```", re.MULTILINE | re.DOTALL)
PAGES = ("README.md", "docs/byom.md")


def _documents():
    for page in PAGES:
        for block in _YAML.findall((ROOT / page).read_text()):
            for doc in yaml.safe_load_all(block):
                if isinstance(doc, dict) and {"detection", "segmentation", "depth"} & set(doc):
                    yield page, doc


def test_every_head_spec_example_loads(tmp_path):
    docs = list(_documents())
    assert len(docs) >= 2  # the annotated schema and the tour's YOLOP
    formats = set()
    for i, (page, doc) in enumerate(docs):
        data = {"name": "example", "input": {"name": "images"}, **doc}
        det = data.get("detection")
        if det and det.get("format", "yolo") != "anchors":
            # the annotated schema shows the anchors-only keys beside format yolo
            det = {k: v for k, v in det.items() if k not in ("scores", "anchors")}
            data["detection"] = det
        if det and str(det.get("anchors", "")).endswith(".npy"):
            np.save(tmp_path / det["anchors"], np.zeros((1, 8, 4), np.float32))
        path = tmp_path / f"heads{i}.yaml"
        path.write_text(yaml.safe_dump(data))
        spec = load_head_spec(path)  # raises SpecError naming an unknown or bad key
        assert spec.tasks, page
        formats.add(spec.detection.format if spec.detection else None)
    assert "yolo" in formats
