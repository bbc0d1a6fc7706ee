"""Training every model type level by level, with checkpoints, resume, metrics and curves."""

from waveletflow.training.trainer import TrainOptions, budget_shares, prepare_run, train, train_level
from waveletflow.training.plots import plot_curves

__all__ = ["TrainOptions", "budget_shares", "plot_curves", "prepare_run", "train", "train_level"]
