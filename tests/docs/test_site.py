"""The site builds offline with `mkdocs build --strict`, its reference rendered from the code."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest

from tests.docs.commands import ROOT


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", PYTHONPATH=str(ROOT))
    r = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, f"mkdocs build --strict failed:\n{r.stdout[-3000:]}\n{r.stderr[-6000:]}"
    return out


def test_the_site_builds_strict_with_every_page_of_the_nav(site):
    import yaml

    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.Loader)  # !!python/name tags

    def pages(nav):
        for item in nav:
            for value in item.values():
                yield from pages(value) if isinstance(value, list) else [value]

    for page in pages(config["nav"]):
        html = site / page.removesuffix(".md").removesuffix("index") / "index.html"
        assert html.is_file(), page
    included = (site / "benchmarks-results" / "index.html").read_text()
    assert "Where the time goes at concurrency 1" in included  # BENCHMARKS.md, included not copied


def test_the_cli_reference_holds_every_command_and_option(site):
    import typer.main

    from tests.docs.commands import percept_app

    app = percept_app()
    html = (site / "reference" / "cli" / "index.html").read_text()

    def walk(cmd, path):
        yield path, cmd
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, [*path, name])

    for path, cmd in walk(typer.main.get_command(app), ["percept"]):
        assert f'id="{"-".join(path)}"' in html, path
        for param in cmd.params:
            for opt in getattr(param, "opts", []):
                if opt.startswith("--"):
                    assert opt in html, (path, opt)


def test_the_head_spec_and_contract_references_follow_the_code(site):
    from exporters.export import head_spec
    from serving import spec

    html = (site / "reference" / "head-spec" / "index.html").read_text()
    for cls, prefix in (
        (head_spec.HeadSpec, ""),
        (head_spec.InputSpec, "input."),
        (head_spec.DetectionSpec, "detection."),
        (head_spec.SegmentationSpec, "segmentation."),
        (head_spec.DepthSpec, "depth."),
    ):
        for field in dataclasses.fields(cls):
            assert f"<code>{prefix}{field.name}</code>" in html, prefix + field.name
    assert all(f"<code>{f}</code>" in html for f in head_spec.DET_FORMATS)
    contract = (site / "reference" / "tensor-contract" / "index.html").read_text()
    for name in (spec.IMAGES, spec.LIDAR_DEPTH, spec.IMAGE_ENCODED, spec.SOURCE_HW, spec.POINTS, spec.DEPTH):
        assert f"<code>{name}</code>" in contract, name
    assert "<code>perception_fusion</code>" in contract and "<code>[batch, 192, 320]</code>" in contract
