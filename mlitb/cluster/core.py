"""The project side of a cluster (no Ray here): the round clock over gateways' partials, and the model state.

`ProjectCore` holds one project's `ProjectRuntime` without clients of its own: its parameters, server
optimizer, version, metrics and checkpoints. Gateways (mlitb/cluster/gateway.py) ask it for the next
round (`next_round`: the version, the parameters and the time left) and hand it one `Partial` per round
(`submit`). A round opens once some gateway waits for one; it closes when every live gateway has
submitted (the barrier) or at period_s + grace_s (the deadline); then the sum of the partials goes
through the runtime's `finish_update` (the optimizer step, metrics, version + 1) exactly as one process
applies its aggregator. A gateway that stops calling (killed) is live for `live_periods` periods more;
until then each round waits for it until the deadline, after that it is no longer waited for.
The project also decides which training ids each gateway's trainers may hold: gateways report what their
trainers can hold (`hello`, `next_round`) and each round hands a gateway its share when it changed (shares.py).
The Ray actor (mlitb/cluster/actors.py) is a thin shell around this class.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

import numpy as np

from mlitb.cluster.closures import project_closure
from mlitb.cluster.partial import PartialSum
from mlitb.cluster.shared import SharedChanges
from mlitb.cluster.shares import ShareBook
from mlitb.cluster.votes import VoteSum
from mlitb.errors import ErrorCode, MlitbError
from mlitb.master.loop import ProjectRuntime
from mlitb.master.project import Hyper

log = logging.getLogger("mlitb.cluster")


def not_in_cluster(hyper: Hyper) -> str | None:
    """Why a project with these hyper-parameters cannot run through gateways, or None. Refused at start (launch)
    and by a round, rather than run something else than one process would."""
    if hyper.mode != "sync":
        return "mode 'async' is not wired through gateways (their rounds are synchronous): use mode 'sync'"
    if hyper.deterministic:
        return "deterministic (replayable) rounds are not recorded across gateways: set deterministic false"
    return None


class ProjectCore(SharedChanges):
    def __init__(self, runtime: ProjectRuntime, grace_s: float = 1.0, live_periods: float = 3.0,
                 checkpoint: Callable[[ProjectRuntime], Awaitable[None]] | None = None):
        self.runtime = runtime
        self.grace_s = grace_s
        self.live_periods = live_periods
        self.checkpoint = checkpoint
        self.clock = runtime.clock
        self.gateways: dict[str, dict] = {}  # name -> {"seen": clock, "url": ..., "clients": n}
        self._open: PartialSum | None = None
        self._took: set[str] = set()  # gateways that took the open round
        self._deadline = 0.0
        self._changed = asyncio.Event()  # set (and replaced) whenever a round opens or a partial arrives
        self._waiting = 0  # gateways inside next_round
        self._stopped = False
        self.refused = 0  # partials refused (hostile or broken gateways, late partials)
        self.generation = 0  # +1 at every change of weights, network or data made at a gateway (shared.py)
        self.shares = ShareBook()  # which training ids each gateway's trainers may hold (shares.py)

    # ---- what gateways call ------------------------------------------------------------------------
    def hello(self, gateway: str, url: str = "", clients: int = 0, capacity: int | None = None) -> None:
        """A gateway is alive (its URL and number of connected clients, for GET /api/gateways; what its trainers
        can hold, which sizes its share of the data: BAD_VALUE unless a non-negative integer, clamped)."""
        if capacity is not None:
            self.shares.report(gateway, capacity, self._capacity_bound())
        self.gateways[gateway] = {"seen": self.clock(), "url": url, "clients": clients}

    async def next_round(self, gateway: str, after: int, capacity: int | None = None, share_version: int | None = None
                         ) -> tuple[int, np.ndarray, float, Hyper, int, tuple | None]:
        """Wait for an open round newer than `after`; returns (version, parameters, seconds left to its deadline,
        the project's hyper-parameters: a change made at one gateway reaches the others with the next round,
        the generation of its weights, network and data: a gateway behind it takes them first, `state`, and the
        gateway's share of the training ids as (version, data size, ids), or None when it has `share_version`).
        `capacity`: what the gateway's trainers can hold now, as in `hello`."""
        if capacity is not None:
            self.shares.report(gateway, capacity, self._capacity_bound())
        self._waiting += 1
        self._notify()
        try:
            while not self._stopped:
                info = self.gateways.setdefault(gateway, {"url": "", "clients": 0})
                info["seen"] = self.clock()
                agg = self._open
                if agg is not None and agg.version > after:
                    self._took.add(gateway)
                    left = max(0.0, self._deadline - self.clock())
                    return (agg.version, self.runtime.params, left, self.runtime.hyper, self.generation,
                            self._share_for(gateway, share_version))
                await self._wait_change(1.0)
            raise MlitbError(ErrorCode.STALE_ROUND, "the project is stopping")
        finally:
            self._waiting -= 1

    def _capacity_bound(self) -> int:
        """The most one gateway's trainers can hold: the project's trainer cap, each at the per-trainer capacity."""
        rt = self.runtime
        return rt.settings.max_clients_per_project * rt.capacity_for(rt.dataset)

    def _share_for(self, gateway: str, known) -> tuple | None:
        data = self.runtime.dataset
        version, size = ("", 0) if data is None else (data.stable_version, len(data.train))
        return self.shares.share_for(gateway, known, self.live(), version, size)

    def set_hyper(self, hyper) -> Hyper:
        """Live hyper-parameters changed at a gateway (PATCH .../hyper there): checked again here, in force from
        the next round's step on (the open one's too, as in one process)."""
        checked = Hyper.model_validate(hyper.model_dump() if isinstance(hyper, Hyper) else hyper)
        self.runtime.change_hyper(checked)
        return checked

    def submit(self, partial) -> None:
        """One gateway's partial of the open round; MlitbError (counted, nothing kept) when refused."""
        agg = self._open
        try:
            if agg is None:
                raise MlitbError(ErrorCode.STALE_ROUND, "no round is open")
            agg.add(partial)
        except MlitbError:
            self.refused += 1
            raise
        self.gateways.setdefault(partial.gateway, {"url": "", "clients": 0})["seen"] = self.clock()
        self._notify()

    # ---- the round clock -----------------------------------------------------------------------------
    def live(self) -> list[str]:
        horizon = self.clock() - self.live_periods * self.runtime.hyper.period_s - self.grace_s
        return sorted(g for g, info in self.gateways.items() if info.get("seen", -1e18) >= horizon)

    def expected(self) -> set[str]:
        """The gateways the open round waits for: live ones that took it or have clients (a live gateway without
        clients asks for no round, and holding each round to its deadline for it would cost a grace period)."""
        return {g for g in self.live() if g in self._took or self.gateways[g].get("clients")}

    async def run_round(self) -> dict:
        """Open one round, wait for every live gateway's partial or the deadline, and apply the sum."""
        rt = self.runtime
        hyper = rt.hyper
        refusal = not_in_cluster(hyper)
        if refusal is not None:
            raise MlitbError(ErrorCode.INVALID_HYPER, refusal)
        waiting_change = rt._pending_change is not None  # an example added at a gateway during the last round
        stats = rt.begin_update()
        if waiting_change:  # now in force: gateways take it with this round (shared.py)
            self.generation += 1
        cap = int(rt.settings.max_samples_per_s * max(hyper.period_s, 1.0))
        # the mean arrives as one sum per gateway; a robust rule's round takes each gateway's votes (votes.py)
        agg = (PartialSum(stats.round, rt.param_count, cap) if hyper.aggregation == "mean" else
               VoteSum(stats.round, rt.param_count, cap, hyper, rt.settings.max_clients_per_project))
        self._deadline = self.clock() + hyper.period_s + self.grace_s
        self._open, self._took = agg, set()
        self._notify()
        try:
            while not self._stopped and self.clock() < self._deadline:
                expected = self.expected()
                if expected and expected <= set(agg.gateways):
                    break
                await self._wait_change(self._deadline - self.clock())
        finally:
            self._open = None  # from here on no partial of this round is taken: none is applied half or twice
        stats.trainers = agg.contributions
        record = rt.finish_update(stats, agg)
        record["gateways"] = len(agg.gateways)
        if self.checkpoint is not None and rt.round % rt.settings.checkpoint_every == 0:
            await self.checkpoint(rt)
        return record

    async def run(self) -> None:
        """Rounds while some gateway asks for one."""
        while not self._stopped:
            if self._waiting == 0:
                await self._wait_change(1.0)
                continue
            try:
                await self.run_round()
            except MlitbError as err:
                log.error("project %s: %s", self.runtime.id, err)
                await asyncio.sleep(self.runtime.hyper.period_s)

    def stop(self) -> None:
        self._stopped = True
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_change(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._changed.wait(), timeout=max(0.0, timeout))
        except asyncio.TimeoutError:
            pass

    async def closure(self, description: str = "", evaluated=None, unreported: str | None = None) -> bytes:
        """The project's research closure, asked for by a gateway (POST .../closures there): built from this
        runtime (its optimizer state and every round's metrics), with the gateway's tracker report checked as
        hostile (mlitb/cluster/closures.py). Rounds go on while the zip is built."""
        return await project_closure(self.runtime, description, evaluated, unreported)


class LocalUpstream:
    """A gateway's upstream in the same process (tests, and the seam the Ray handle mirrors)."""

    def __init__(self, core: ProjectCore):
        self.core = core

    async def next_round(self, gateway: str, after: int, capacity: int | None = None, share_version: int | None = None):
        return await self.core.next_round(gateway, after, capacity, share_version)

    async def submit(self, partial) -> None:
        self.core.submit(partial)

    async def set_hyper(self, hyper) -> None:
        self.core.set_hyper(hyper)

    async def state(self) -> dict:
        return self.core.state()

    async def load_weights(self, params) -> None:
        self.core.load_weights(params)

    async def add_example(self, label, image) -> None:
        self.core.add_example(label, image)

    async def attach_data(self, dataset, train: bool = True) -> None:
        self.core.attach_data(dataset)

    async def closure(self, description: str = "", evaluated=None, unreported: str | None = None) -> bytes:
        return await self.core.closure(description, evaluated, unreported)
