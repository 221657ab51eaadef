"""Output comparison of two batched output dicts, free of tritonclient (the GPU kit imports it
where no tritonclient is installed): the verification stage's own, re-exported for the tests."""

from exporters.export.output_compare import output_differences

__all__ = ["output_differences"]
