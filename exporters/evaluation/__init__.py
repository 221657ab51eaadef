"""Backend-agnostic evaluation (torch-free): detection AP, segmentation IoU, depth error."""

from exporters.evaluation.dense import DepthAccumulator, SegmentationAccumulator
from exporters.evaluation.detection import DetectionAccumulator, average_precision, box_iou
from exporters.evaluation.evaluate import Evaluator, evaluate
from exporters.evaluation.split import is_validation_seed, training_seed, validation_seeds

__all__ = [
    "DepthAccumulator",
    "DetectionAccumulator",
    "Evaluator",
    "SegmentationAccumulator",
    "average_precision",
    "box_iou",
    "evaluate",
    "is_validation_seed",
    "training_seed",
    "validation_seeds",
]
