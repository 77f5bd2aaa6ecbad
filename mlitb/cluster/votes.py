"""Robust aggregation through gateways: what a gateway forwards for the rules that compare clients' votes.

The sample-weighted mean decomposes into sums (partial.py). The robust rules do not: a median, a trimmed mean
or a centred clip needs every vote of the round at once, and one vote per address (mlitb/trust/addresses.py)
needs an address's results summed before the rule sees them, wherever they arrived. So for "centered_clip",
"median" and "trimmed_mean" a gateway forwards its votes (`Votes`, kind "rows"): each vote's summed gradient
and sample count, and its address when it has one (a vote of its own, an exempt client's, has none). The
project side (`VoteSum`) merges the votes of one address across gateways (summed gradient over summed count,
as one process does), then runs the same rule as one process (`make_aggregator`). Cost: one float32 vector
per vote per round from each gateway, votes x parameters x 4 bytes (docs/cluster.md).

"clipped_mean" is pre-reduced at the gateway (kind "classes"): a vote's weight is min(count, median count)
and depends only on its count, so a gateway sums its votes' clipped per-sample means per distinct count (one
float64 vector per count class, with the number of votes in it). The project finds the median count from the
classes, weighs each class sum and divides by the summed weights: exactly the single-process rule up to float64
rounding. The clip happens at the gateway, so an address with trainers on two gateways has one (clipped,
weight-capped) vote at each; with the rows kind its results would merge into one.

Every field is hostile input: types, shapes, dtypes, finite values, counts that add up, at most one row per
contribution and per client the project allows, and (classes) each class sum within its votes' clip norm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mlitb.cluster.partial import RoundOfGateways
from mlitb.errors import ErrorCode, MlitbError
from mlitb.training.clipping import clip_to_norm
from mlitb.training.rules import RobustAggregator, make_aggregator

FORWARDED = ("centered_clip", "median", "trimmed_mean")  # rules whose gateways forward votes (rows)
CLASSED = ("clipped_mean",)  # rules a gateway pre-reduces per count class
MAX_KEY = 200  # characters of an address key
NORM_SLACK = 1.0 + 1e-5  # float rounding allowed on a class sum's norm bound


@dataclass(slots=True)
class Votes:
    gateway: str
    version: int
    kind: str  # "rows" or "classes"
    rows: np.ndarray  # rows: (votes, P) float32 summed gradients; classes: (classes, P) float64 sums of clipped means
    counts: tuple  # rows: each vote's samples; classes: each class's sample count
    keys: tuple  # rows: each vote's address ("" for a vote of its own); classes: votes in each class (ints)
    samples: int
    loss_sum: float
    contributions: int
    clip_norm: float = 0.0  # classes: the norm each clipped mean was held to

    @classmethod
    def of(cls, gateway: str, version: int, agg: RobustAggregator, hyper) -> "Votes":
        """The votes of a gateway's robust aggregator, for `hyper.aggregation`."""
        sums, counts = agg._sums, agg._counts
        if hyper.aggregation in CLASSED:
            classes: dict[int, list] = {}
            for g, n in zip(sums, counts):
                entry = classes.setdefault(n, [np.zeros(agg.size, np.float64), 0])
                entry[0] += clip_to_norm(g / np.float32(n), hyper.clip_norm)
                entry[1] += 1
            order = sorted(classes)
            rows = np.stack([classes[n][0] for n in order]) if order else np.zeros((0, agg.size), np.float64)
            return cls(gateway, version, "classes", rows, tuple(order), tuple(classes[n][1] for n in order),
                       int(agg.samples), float(agg.loss_sum), int(agg.contributions), float(hyper.clip_norm))
        keys = [""] * len(sums)
        for group, row in agg._groups.items():
            if isinstance(group, tuple) and len(group) == 2 and group[0] == "address" and group[1]:
                keys[row] = str(group[1])
        rows = np.stack(sums) if sums else np.zeros((0, agg.size), np.float32)
        return cls(gateway, version, "rows", rows, tuple(int(n) for n in counts), tuple(keys), int(agg.samples),
                   float(agg.loss_sum), int(agg.contributions))


def _ints(values, name: str) -> list[int]:
    if not isinstance(values, tuple) or any(type(v) is not int or v < 1 for v in values):
        raise MlitbError(ErrorCode.BAD_SAMPLE_COUNT, f"votes' {name} are positive integers")
    return list(values)


def check_votes(v, param_count: int, kind: str, cap: int, max_rows: int) -> Votes:
    """`v` as Votes of `kind` the project may take, or MlitbError; nothing of it is trusted."""
    if not isinstance(v, Votes):
        raise MlitbError(ErrorCode.FRAME_MALFORMED, f"votes were expected, not {type(v).__name__}")
    if v.kind != kind:
        raise MlitbError(ErrorCode.INVALID_HYPER, f"votes of kind {v.kind!r}; this round's rule takes {kind!r}")
    if not isinstance(v.gateway, str) or not 0 < len(v.gateway) <= MAX_KEY:
        raise MlitbError(ErrorCode.BAD_VALUE, "votes name their gateway")
    for name in ("version", "samples", "contributions"):
        if type(getattr(v, name)) is not int:
            raise MlitbError(ErrorCode.BAD_VALUE, f"votes' {name} must be an integer")
    if not isinstance(v.loss_sum, float) or not math.isfinite(v.loss_sum) or v.loss_sum < 0:
        raise MlitbError(ErrorCode.BAD_VALUE, "votes' summed loss is finite and not negative")
    if not 0 <= v.contributions <= max_rows or not v.contributions <= v.samples <= v.contributions * cap:
        raise MlitbError(ErrorCode.BAD_SAMPLE_COUNT, f"{v.samples} samples from {v.contributions} contributions "
                         "is not possible")
    dtype = np.float32 if kind == "rows" else np.float64
    k = len(v.counts) if isinstance(v.counts, tuple) else -1
    if (not isinstance(v.rows, np.ndarray) or v.rows.dtype != dtype or v.rows.ndim != 2
            or v.rows.shape[1] != param_count or v.rows.shape[0] != k or not isinstance(v.keys, tuple)
            or len(v.keys) != k or k > v.contributions or (v.contributions > 0) != (k > 0)):
        raise MlitbError(ErrorCode.WRONG_LENGTH, f"votes are one {dtype.__name__} row of {param_count} values, "
                         "one count and one key per vote, at most one vote per contribution")
    counts = _ints(v.counts, "counts")
    if kind == "rows":
        if sum(counts) != v.samples:
            raise MlitbError(ErrorCode.BAD_SAMPLE_COUNT, "votes' counts do not add up to their samples")
        named = [key for key in v.keys if key != ""]
        if any(not isinstance(key, str) or len(key) > MAX_KEY for key in v.keys) or len(set(named)) != len(named):
            raise MlitbError(ErrorCode.BAD_VALUE, "each vote names a different address (or none)")
    else:
        sizes = _ints(v.keys, "class sizes")
        if (len(set(counts)) != len(counts) or sum(n * m for n, m in zip(counts, sizes)) != v.samples
                or sum(sizes) > v.contributions):
            raise MlitbError(ErrorCode.BAD_SAMPLE_COUNT, "count classes do not add up to the votes' samples")
    if not np.isfinite(v.rows).all():
        raise MlitbError(ErrorCode.NON_FINITE, "votes hold NaN or infinite values")
    if kind == "classes":
        if not isinstance(v.clip_norm, float) or not v.clip_norm > 0:
            raise MlitbError(ErrorCode.BAD_VALUE, "a clip norm is a positive number")
        norms = np.sqrt(np.einsum("ij,ij->i", v.rows, v.rows))
        if (norms > np.asarray(v.keys) * v.clip_norm * NORM_SLACK).any():  # m clipped means: norm <= m x clip
            raise MlitbError(ErrorCode.BAD_VALUE, "a class sum is longer than its votes' clipped means can be")
    return v


class VoteSum(RoundOfGateways):
    """The project side of one round under a robust rule: the gateways' votes, taken whole or not at all, once per
    gateway; `mean()` applies the rule of `hyper` to all of them. Same interface as PartialSum."""

    def __init__(self, version: int, param_count: int, max_samples_per_contribution: int, hyper, max_rows: int):
        self.version, self.param_count, self.cap, self.hyper, self.max_rows = (
            version, param_count, max_samples_per_contribution, hyper, max_rows)
        self.kind = "classes" if hyper.aggregation in CLASSED else "rows"
        self._partials: dict[str, Votes] = {}
        self._agg: RobustAggregator | None = None  # the merged rows (rows rules), built when first needed

    def add(self, v) -> None:
        v = check_votes(v, self.param_count, self.kind, self.cap, self.max_rows)
        if self.kind == "classes" and v.clip_norm != float(self.hyper.clip_norm):
            raise MlitbError(ErrorCode.INVALID_HYPER, f"votes clipped to {v.clip_norm}; the project clips to "
                             f"{self.hyper.clip_norm}")
        self.take(v, "votes")
        self._agg = None

    def mean(self) -> np.ndarray:
        if self.samples <= 0:
            raise ValueError("no samples accumulated")
        ordered = [self._partials[g] for g in self.gateways]
        if self.kind == "classes":
            counts = np.concatenate([np.repeat(np.asarray(v.counts, np.float64), v.keys) for v in ordered])
            median = np.median(counts)
            acc = np.zeros(self.param_count, np.float64)
            total = 0.0
            for v in ordered:
                for n, m, row in zip(v.counts, v.keys, v.rows):
                    w = min(float(n), median)
                    acc += w * row
                    total += w * m
            return (acc / total).astype(np.float32)
        return self._merged().mean()

    def _merged(self) -> RobustAggregator:
        """The rows of every gateway in one aggregator (built once a round): one address's votes from several
        gateways merge into one, as in one process."""
        if self._agg is None:
            agg = make_aggregator(self.hyper, self.param_count)
            for v in (self._partials[g] for g in self.gateways):
                for row, n, key in zip(v.rows, v.counts, v.keys):
                    agg.add(row, n, 0.0, ("address", key) if key else None)
            self._agg = agg
        return self._agg

    @property
    def public_votes(self) -> int:
        """Public votes the master's bound applies to (none for count classes: those are clipped per vote)."""
        return 0 if self.kind == "classes" or self.samples <= 0 else self._merged().public_votes

    def bound_votes(self, max_norm: float, reference: np.ndarray | None = None) -> int:
        """The master's bound on public votes (mlitb/master/trust_hooks.py), on the merged votes exactly as one
        process bounds its own; count classes (clipped_mean) are clipped per vote already and are left as they are."""
        if self.kind == "classes" or self.samples <= 0:
            return 0
        return self._merged().bound_votes(max_norm, reference)
