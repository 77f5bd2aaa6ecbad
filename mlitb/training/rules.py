"""The per-project choice of aggregation rule: `make_aggregator(hyper, size)` for one round.

"centered_clip" (the default; centered_clip.py says why) clips each client's deviation from the
coordinate-wise median to the round's median deviation. "mean" is the streaming sample-weighted
mean of MLitB (one vector, whatever the number of clients), fast but open to one hostile client.
The robust rules (centered_clip, clipped_mean, median, trimmed_mean) need every client's vector
at once, so their aggregator keeps a copy of each gradient sum of the round (clients x
parameters float32) and applies the pure rule in `mean()`. Results given the same `group` (the
trainers of one address) are summed into one vote before the rule sees them, so several trainers
of one machine cannot outvote the others. Both have the same interface:
`add(grad_sum, samples, loss_sum, group)`, `add_finite(...)` (False and nothing kept when a value is not
finite), `mean()`, `samples`, `loss_sum`, `contributions`.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Protocol

import numpy as np

from mlitb.training.aggregate import GradientAccumulator, all_finite
from mlitb.training.centered_clip import centered_clip
from mlitb.training.clipping import clipped_mean
from mlitb.training.median import coordinate_median
from mlitb.training.trimmed_mean import trimmed_mean

AGGREGATION_RULES = ("centered_clip", "mean", "clipped_mean", "median", "trimmed_mean")


class Aggregator(Protocol):
    samples: int
    loss_sum: float
    contributions: int

    def add(self, grad_sum: np.ndarray, samples: int, loss_sum: float = 0.0, group: object = None) -> None: ...

    def add_finite(self, grad_sum: np.ndarray, samples: int, loss_sum: float = 0.0, group: object = None) -> bool: ...

    def mean(self) -> np.ndarray: ...


class AggregationHyper(Protocol):
    aggregation: str
    clip_norm: float
    trim_fraction: float


class RobustAggregator:
    """Keeps each client's gradient sum and count of one round; `mean()` applies `rule`."""

    def __init__(self, size: int, rule: Callable[[np.ndarray, np.ndarray], np.ndarray]):
        self.size = size
        self.rule = rule
        self._sums: list[np.ndarray] = []
        self._counts: list[int] = []
        self._groups: dict[object, int] = {}  # group -> its row in _sums
        self.anchor: tuple[np.ndarray, float] | None = None  # set by bound_votes
        self.samples = 0  # claimed samples, for the round's metrics
        self.loss_sum = 0.0
        self.contributions = 0

    def add(self, grad_sum: np.ndarray, samples: int, loss_sum: float = 0.0, group: object = None) -> None:
        g = np.array(grad_sum, dtype=np.float32)  # a copy: the frame's buffer is not ours to keep
        if g.shape != (self.size,):
            raise ValueError(f"gradient of shape {g.shape}; expected ({self.size},)")
        if samples <= 0:
            raise ValueError("sample count must be positive")
        row = self._groups.get(group) if group is not None else None
        if row is None:
            if group is not None:
                self._groups[group] = len(self._sums)
            self._sums.append(g)
            self._counts.append(int(samples))
        else:  # the group's vote: its results' summed gradient over their summed count
            self._sums[row] += g
            self._counts[row] += int(samples)
        self.samples += int(samples)
        self.loss_sum += loss_sum
        self.contributions += 1

    def add_finite(self, grad_sum: np.ndarray, samples: int, loss_sum: float = 0.0, group: object = None) -> bool:
        """Add a gradient sum if every value is finite; otherwise return False and keep nothing."""
        if not all_finite(grad_sum):
            return False
        self.add(grad_sum, samples, loss_sum, group)
        return True

    ANCHORED_BELOW = 3  # votes: with fewer, no majority can outvote a hostile one

    @property
    def public_votes(self) -> int:
        """Votes of public trainers (group ("address", a)): the ones `bound_votes` bounds."""
        return sum(1 for g in self._groups if isinstance(g, tuple) and g and g[0] == "address")

    def bound_votes(self, max_norm: float, reference: np.ndarray | None = None) -> int:
        """Scale each address's vote (group ("address", a): a public trainer's) whose per-sample mean gradient has an
        L2 norm above `max_norm` down to it; returns how many were scaled. The rule alone cannot bound a vote when
        the round has too few votes to outvote one (one or two): the master's own reference gradient can. With
        `reference` (that per-sample mean) and a public vote, a centred-clipping round of fewer than ANCHORED_BELOW
        votes is centred on it, each deviation clipped to its norm: a hostile vote can cancel the step, not turn it."""
        scaled = 0
        for group, row in self._groups.items():
            if not (isinstance(group, tuple) and group and group[0] == "address"):
                continue
            if reference is not None:
                self.anchor = (reference, float(np.linalg.norm(reference.astype(np.float64))))
            norm = float(np.linalg.norm(self._sums[row].astype(np.float64))) / self._counts[row]
            if norm > max_norm:
                self._sums[row] *= np.float32(max_norm / norm)
                scaled += 1
        return scaled

    def mean(self) -> np.ndarray:
        if not self._sums:
            raise ValueError("no samples accumulated")
        if self.anchor is not None and self.rule is centered_clip and len(self._sums) < self.ANCHORED_BELOW:
            return centered_clip(np.stack(self._sums), np.asarray(self._counts), anchor=self.anchor)
        return self.rule(np.stack(self._sums), np.asarray(self._counts))


def make_aggregator(hyper: AggregationHyper, size: int) -> Aggregator:
    """A fresh aggregator for one round of `size` parameters, by `hyper.aggregation`."""
    rule = hyper.aggregation
    if rule == "mean":
        return GradientAccumulator(size)
    if rule == "centered_clip":
        return RobustAggregator(size, centered_clip)
    if rule == "clipped_mean":
        return RobustAggregator(size, partial(clipped_mean, max_norm=hyper.clip_norm))
    if rule == "median":
        return RobustAggregator(size, coordinate_median)
    if rule == "trimmed_mean":
        return RobustAggregator(size, partial(trimmed_mean, beta=hyper.trim_fraction))
    raise ValueError(f"unknown aggregation rule {rule!r}; known: {', '.join(AGGREGATION_RULES)}")
