"""The multi-task trainer of the default weights (torch)."""

from exporters.training.losses import LossWeights
from exporters.training.trainer import TrainOptions, TrainResult, train, train_and_ship

__all__ = ["LossWeights", "TrainOptions", "TrainResult", "train", "train_and_ship"]
