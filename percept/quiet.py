"""Third-party output a user cannot act on, silenced at the command-line boundary.

Called once by every entry point (``percept.cli.main``, ``percept.demo.main``, ``python -m
percept.bench``) and nowhere else: library code and tests see every warning. Each entry names what it
silences and why it is harmless.
"""

from __future__ import annotations

import logging
import warnings

# the ONNX exporter's own passes log every graph rewrite at INFO
_INFO_CHATTY = ("onnx_ir", "onnxscript", "torch.onnx", "torch._export", "torch.export")
# "torchvision is not installed. Skipping torchvision::nms" (and roi_align, roi_pool, deform_conv2d):
# the exporter registers torchvision's ops when it can; our NMS is our own op, we use none of them
_WARNING_CHATTY = ("torch.onnx._internal.exporter._registration",)
# (category, message regex): torch.export's dynamic-shape bookkeeping and pytree deprecations inside
# torch itself, raised from torch's own frames for every export of a network with a batch axis
_WARNINGS = (
    (UserWarning, r".*axis name: batch will not be used"),
    (FutureWarning, r".*isinstance\(treespec, LeafSpec\)"),
)


def quiet_third_party() -> None:
    """Silence the known-harmless third-party logs and warnings above (idempotent)."""
    for name in _INFO_CHATTY:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in _WARNING_CHATTY:
        logging.getLogger(name).setLevel(logging.ERROR)
    for category, message in _WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
