"""Training rules as pure NumPy functions (aggregation, optimizer steps, one per file), the server optimizers
that hold their state, and the strategies that turn results into updates (`mlitb.training.strategies`)."""

from mlitb.training.adagrad import adagrad_step
from mlitb.training.aggregate import GradientAccumulator
from mlitb.training.centered_clip import centered_clip
from mlitb.training.clipping import clip_to_norm, clipped_mean
from mlitb.training.median import coordinate_median
from mlitb.training.optimizers import AdaGrad, ServerOptimizer, make_optimizer
from mlitb.training.rules import AGGREGATION_RULES, RobustAggregator, make_aggregator
from mlitb.training.trimmed_mean import trimmed_count, trimmed_mean

__all__ = ["adagrad_step", "centered_clip", "GradientAccumulator", "clip_to_norm", "clipped_mean",
           "coordinate_median", "trimmed_count", "trimmed_mean", "AGGREGATION_RULES", "RobustAggregator",
           "make_aggregator", "AdaGrad", "ServerOptimizer", "make_optimizer"]
