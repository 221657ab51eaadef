"""The command-line boundary silences the ONNX exporter's known-harmless output (and only there:
the library and the tests see every warning)."""

import subprocess
import sys
import textwrap

import pytest

# an export shaped like the networks' (two inputs sharing a batch axis), logging at INFO like `percept`
_EXPORT = textwrap.dedent(
    """
    import logging, sys
    import torch
    from percept.quiet import quiet_third_party

    logging.basicConfig(level=logging.INFO)
    quiet_third_party()

    class Add(torch.nn.Module):
        def forward(self, a, b):
            return a + b

    batch = torch.export.Dim("batch", min=1, max=8)
    example = (torch.zeros(2, 3), torch.zeros(2, 3))
    torch.onnx.export(Add().eval(), example, sys.argv[1], dynamo=True, verbose=False,
                      dynamic_shapes=({0: batch}, {0: batch}), opset_version=18)
    """
)
NOISE = ("torchvision is not installed", "LeafSpec", "axis name: batch", "INFO:onnx_ir", "INFO:onnxscript")


def test_an_export_behind_the_cli_boundary_prints_none_of_the_exporters_noise(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "add.onnx"
    r = subprocess.run([sys.executable, "-c", _EXPORT, str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and out.stat().st_size > 0, r.stderr
    assert [n for n in NOISE if n in r.stdout + r.stderr] == [], r.stderr
