"""The strategy seam: what a strategy receives (`Result`), what it may ask of the runtime (`Host`), and
what the runtime asks of it (`Strategy`). See docs/architecture.md, "Strategies".

The project runtime (mlitb/master/loop.py) owns everything that does not depend on how results
become updates: membership and data allocation, each client's estimates and work time, frames out,
the model and its version, the server optimizer, checkpoints, the closure record and the metrics. A
strategy decides *when* results become an update and *which* results count: synchronous time-boxed
rounds (`sync_rounds.py`) today; a buffered asynchronous strategy or local-SGD rounds are each one
more file here. These types live in `mlitb.training` (below `mlitb.master`) so strategies import
nothing of the runtime: the runtime is handed to them as a `Host`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(slots=True)
class Result:
    """One trainer's result, decoded and checked by the runtime: the frame came from a joined trainer of this
    project, `grad` has the model's parameter count, 1 <= samples <= the client's cap, loss_sum >= 0.

    `grad` is a read-only float32 view of the frame (copy it to keep it past the call). Its values are NOT yet
    checked for finiteness: the strategy checks them where it adds them (`add_finite` of an aggregator, one
    pass over memory for check and add) or with `mlitb.training.aggregate.all_finite`, and refuses with
    NON_FINITE. `version` is the model version the client computed from (the GRADIENT header's `round`
    field; in synchronous rounds the version is the round)."""

    client_id: int
    version: int
    grad: np.ndarray  # the dense float32 sum of per-sample gradients (or a parameter delta, by strategy)
    samples: int
    loss_sum: float
    compute_ms: int  # time the client spent computing (0: not reported)
    group: object = None  # the client's vote: robust rules sum one group's results first (one vote per address)
    commitment: object = None  # its per-batch commitments (mlitb.codec.committed.Commitment; spot checks), or None
    # the runtime clock when its frame was taken in: its round trip ends there, not after the server's own checks
    arrived: float | None = None


@dataclass(slots=True)
class UpdateStats:
    """Telemetry of one update in the making; the runtime turns it into the update's metrics record."""

    round: int  # the version this update will close (the round, in synchronous mode)
    started: float  # runtime clock
    trainers: int = 0
    latencies: list[float] = field(default_factory=list)
    rejected: int = 0
    clamped: int = 0  # results whose sample count was cut to the client's allowance (mlitb/trust/claims.py)
    late: int = 0
    refreshed: int = 0
    late_applied: int = 0
    ingest: list[float] = field(default_factory=list)  # server thread CPU s between consecutive results
    staleness: list[int] = field(default_factory=list)  # per applied result: versions between its start and the update
    refused_stale: int = 0  # results refused as older than max_staleness
    up_bytes: int = 0  # bytes of the result frames taken in (compressed uploads: docs/protocol.md)
    down_bytes: int = 0  # bytes of the PARAMS frames sent for this update
    down_frames: int = 0


class Host(Protocol):
    """What the runtime offers a strategy (ProjectRuntime implements it)."""

    @property
    def round(self) -> int:
        """The model version: the number of updates applied since the project started."""

    @property
    def param_count(self) -> int: ...

    @property
    def hyper(self): ...  # the project's live hyper-parameters (mlitb.master.project.Hyper)

    def clock(self) -> float: ...

    def trainer_ids(self) -> list[int]:
        """Admitted trainers, in the order frames go out."""

    def begin_update(self) -> UpdateStats:
        """Between updates: apply a pending model change, admit waiting trainers, refresh and send allocations;
        returns the telemetry of the update that starts now."""

    def broadcast(self, due: set[int]) -> None:
        """Send the current parameters to every worker and each trainer its WORK (work time and, in
        deterministic mode, its examples); the trainers in `due` get work times staggered by the server's
        ingest time so their results arrive one after another before the deadline."""

    def dispatch(self, client_id: int) -> None:
        """Send the current parameters and a WORK frame to one trainer (re-dispatch as soon as it answered)."""

    def publish(self) -> None:
        """Send the current parameters to every tracker (`broadcast` does this too); they are remembered for a
        while, so a tracker's test error of this version can be kept with them."""

    def observe(self, result: Result, since: float, stats: UpdateStats | None = None) -> float:
        """Update the client's rate and latency estimates from a result of work sent at clock time `since`;
        returns the latency sample (ms). With `stats`, the result was taken into that update: the sample joins
        its latencies, and the server's CPU time since the previous result taken in joins its ingest times
        (which pace the arrivals)."""

    def count_late(self, applied: bool) -> None:
        """A result for an older version arrived (counted in the cumulative counters); `applied`: it was taken
        into the update in progress (with a staleness weight), else it was refused."""

    def record_contribution(self, result: Result):
        """Deterministic mode (`hyper.deterministic`): check the result against the examples the master named (BAD_SAMPLE_COUNT)
        and return a token for `record_reduced`; None when the project is not deterministic."""

    def record_reduced(self, token) -> None:
        """The contribution was added to the update, in this order (the closure's replay record)."""

    def finish_update(self, stats: UpdateStats, aggregate) -> dict:
        """Apply the aggregate (an aggregator from `make_aggregator`, or anything with its `mean()`, `samples`,
        `loss_sum`, `contributions`) through the server optimizer (skipped, and counted, if not finite), close
        the closure record's round, append and return the metrics record; the version advances by one."""


class Strategy(Protocol):
    """How results become updates. The runtime calls `bind` once, then `run_update` in a loop while trainers
    are connected, `on_result` for every checked result, `on_leave` when a trainer goes, `stop` at the end."""

    open_version: int | None  # the version an update is being built for, None between updates

    def bind(self, host: Host) -> None: ...

    async def run_update(self) -> dict:
        """Work until the next update is applied; returns its metrics record (from `Host.finish_update`)."""

    def on_result(self, result: Result) -> None:
        """Take one result or refuse it with an MlitbError (STALE_ROUND, DUPLICATE_RESULT, NON_FINITE, ...)."""

    def on_refused(self, result: Result) -> None:
        """A wrapper refused the result before this strategy saw it (a spot-check strike): its work is answered all
        the same, so a round does not wait for it and an asynchronous trainer is sent its next work."""

    def on_leave(self, client_id: int) -> None: ...

    def stop(self) -> None:
        """Abandon the update in progress and return from `run_update` soon."""


class StrategyWrapper:
    """Base of strategy wrappers (spot checks, credit; as Flower's DP wrapper wraps a strategy): every call goes to
    the wrapped strategy unless a subclass overrides it to look at a result on its way in or out."""

    def __init__(self, inner: Strategy):
        self.inner = inner

    @property
    def open_version(self) -> int | None:
        return self.inner.open_version

    def bind(self, host: Host) -> None:
        self.inner.bind(host)

    async def run_update(self) -> dict:
        return await self.inner.run_update()

    def on_result(self, result: Result) -> None:
        self.inner.on_result(result)

    def on_refused(self, result: Result) -> None:
        self.inner.on_refused(result)

    def on_leave(self, client_id: int) -> None:
        self.inner.on_leave(client_id)

    def stop(self) -> None:
        self.inner.stop()

    def __getattr__(self, name: str):
        # anything else a caller reads of the strategy (SyncRounds.aggregate, say) is the wrapped strategy's
        return getattr(self.inner, name)

