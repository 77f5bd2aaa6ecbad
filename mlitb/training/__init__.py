"""Training rules as pure NumPy functions: aggregation and optimizers, one per file."""

from mlitb.training.adagrad import adagrad_step
from mlitb.training.aggregate import GradientAccumulator, weighted_average

__all__ = ["adagrad_step", "GradientAccumulator", "weighted_average"]
