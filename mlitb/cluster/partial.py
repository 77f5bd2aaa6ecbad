"""The pre-reduce seam: one gateway's partial of one round, and the project side's sum of partials.

A gateway checks each client's gradient exactly as one process does (the runtime's `_result_of` and the
strategy's `add_finite`), adds it into one aggregator, and at the round's end forwards a `Partial`: the
sum of its clients' gradient sums, their samples, summed loss and number of contributions. The
project side (`PartialSum`) treats every partial as hostile, since a gateway may be broken or
compromised: it checks the type, dtype, length, finiteness and the counts before it touches the sum,
and adds a partial whole or not at all (never half of one), at most once per gateway and round.

This is the sample-weighted mean's seam: the mean of the union is the sum of the partial sums over the
sum of the samples. The robust rules (centered clip, clipped mean, median, trimmed mean) do not decompose
into one sum; their gateways forward votes instead (votes.py, docs/cluster.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mlitb.errors import ErrorCode, MlitbError

@dataclass(slots=True)
class Partial:
    """What a gateway forwards once per round: the round it belongs to and its clients' reduced results."""

    gateway: str
    version: int
    sum: np.ndarray  # float32, the project's parameter count: the sum of the clients' gradient sums
    samples: int
    loss_sum: float
    contributions: int

    @classmethod
    def of(cls, gateway: str, version: int, aggregate) -> "Partial":
        """The partial of a gateway's aggregator (a `GradientAccumulator`: `sum`, `samples`, ...)."""
        return cls(gateway, version, aggregate.sum.copy(), int(aggregate.samples), float(aggregate.loss_sum),
                   int(aggregate.contributions))


def check_partial(p, param_count: int, max_samples_per_contribution: int) -> Partial:
    """`p` as a Partial the project may add, or MlitbError: every field's type and range is checked, the sum's
    dtype and length, and its values are finite. Nothing is trusted from the gateway."""
    if not isinstance(p, Partial):
        raise MlitbError(ErrorCode.FRAME_MALFORMED, f"a partial was expected, not {type(p).__name__}")
    if not isinstance(p.gateway, str) or not 0 < len(p.gateway) <= 200:
        raise MlitbError(ErrorCode.BAD_VALUE, "a partial names its gateway")
    for name in ("version", "samples", "contributions"):
        if type(getattr(p, name)) is not int:  # bool or numpy integers are not accepted either
            raise MlitbError(ErrorCode.BAD_VALUE, f"partial {name} must be an integer")
    if not isinstance(p.sum, np.ndarray) or p.sum.dtype != np.float32 or p.sum.shape != (param_count,):
        raise MlitbError(ErrorCode.WRONG_LENGTH, f"a partial sum is {param_count} float32 values")
    if p.contributions == 0:  # a gateway whose clients sent nothing this round says so (the barrier counts it)
        if p.samples != 0 or p.loss_sum != 0.0:
            raise MlitbError(ErrorCode.BAD_SAMPLE_COUNT, "a partial of no contributions has no samples")
    elif not 1 <= p.contributions <= p.samples <= p.contributions * max_samples_per_contribution:
        raise MlitbError(ErrorCode.BAD_SAMPLE_COUNT,
                         f"{p.samples} samples from {p.contributions} contributions is not possible")
    if not isinstance(p.loss_sum, float) or not math.isfinite(p.loss_sum) or p.loss_sum < 0:
        raise MlitbError(ErrorCode.BAD_VALUE, "a partial's summed loss is finite and not negative")
    if not np.isfinite(p.sum).all():
        raise MlitbError(ErrorCode.NON_FINITE, "partial sum holds NaN or infinite values")
    return p


class RoundOfGateways:
    """What the project took from the gateways in one round (`_partials`: gateway -> what it sent, each with
    `samples`, `loss_sum` and `contributions`), and the counts `Host.finish_update` reads of it."""

    _partials: dict

    def take(self, got, what: str) -> None:
        """Keep `got` (checked already) unless it is of another round or its gateway sent one already."""
        if got.version != self.version:
            raise MlitbError(ErrorCode.STALE_ROUND, f"{what} for round {got.version}; open round is {self.version}")
        if got.gateway in self._partials:
            raise MlitbError(ErrorCode.DUPLICATE_RESULT,
                             f"already have gateway {got.gateway}'s {what} of round {got.version}")
        self._partials[got.gateway] = got

    @property
    def gateways(self) -> list[str]:
        return sorted(self._partials)

    @property
    def samples(self) -> int:
        return sum(p.samples for p in self._partials.values())

    @property
    def loss_sum(self) -> float:
        return sum(self._partials[g].loss_sum for g in self.gateways)

    @property
    def contributions(self) -> int:
        return sum(p.contributions for p in self._partials.values())


class PartialSum(RoundOfGateways):
    """The project side's aggregate of one round: partials summed in a fixed order (gateway name), so the result
    does not depend on which gateway answered first. Has what `Host.finish_update` reads: `mean()`, `samples`,
    `loss_sum`, `contributions`."""

    def __init__(self, version: int, param_count: int, max_samples_per_contribution: int):
        self.version = version
        self.param_count = param_count
        self.cap = max_samples_per_contribution
        self._partials: dict[str, Partial] = {}
        self.refused = 0

    def add(self, p) -> None:
        """Take one gateway's partial of this round, or raise MlitbError (and keep nothing of it)."""
        self.take(check_partial(p, self.param_count, self.cap), "partial")

    @property
    def sum(self) -> np.ndarray:
        """float32 sum of the partials, added in gateway-name order (one gateway: its sum, bit for bit)."""
        total = np.zeros(self.param_count, dtype=np.float32)
        for g in self.gateways:
            np.add(total, self._partials[g].sum, out=total)
        return total

    def mean(self) -> np.ndarray:
        if self.samples <= 0:
            raise ValueError("no samples accumulated")
        return self.sum / np.float32(self.samples)
