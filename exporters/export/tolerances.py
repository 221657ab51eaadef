"""The verification bounds per precision: the table lives in :mod:`serving.tolerances` (torch-free,
so `percept compare` on the client side gates with the same rows); re-exported for the export stages."""

from __future__ import annotations

from serving.tolerances import TOLERANCES, Tolerances

__all__ = ["TOLERANCES", "Tolerances"]
