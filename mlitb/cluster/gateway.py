"""The gateway side of a cluster: a project runtime whose updates are made upstream, by the project core.

A gateway runs the same client sessions, frame checks, scheduling (each client's latency, rate and work
time) and aggregator as one process: `GatewayRuntime` is a `ProjectRuntime` driven by `GatewayRounds`,
which is `SyncRounds` with the round clock and the optimizer step moved upstream. Each round it asks
the upstream (a `ProjectCore`, or the Ray actor's handle: anything with `async next_round(gateway,
after)` and `async submit(partial)`) for the version and parameters, takes them (`follow`), sends them
to its clients once (one shared PARAMS frame), adds their gradients as they arrive, and at its barrier
or ahead of the upstream deadline forwards one `Partial`. With the round comes, when it changed, the gateway's
share of the training data (mlitb/cluster/shares.py): its allocator allocates only within it. The optimizer
step is the upstream's: the gateway never changes the parameters itself (`apply_update` is not a step here).
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np

from mlitb.cluster.partial import Partial
from mlitb.cluster.shared import adopt, last_example
from mlitb.cluster.votes import Votes
from mlitb.errors import ErrorCode, MlitbError
from mlitb.master.loop import ProjectRuntime
from mlitb.master.project import parse_project_spec
from mlitb.master.registry import ProjectRegistry
from mlitb.training.rules import make_aggregator
from mlitb.training.strategies import SyncRounds

log = logging.getLogger("mlitb.cluster")

UPSTREAM_PAUSE_S = 0.5  # a gateway refused a round (its project is stopping) asks again after this long
SEND_MARGIN_S = 0.25  # a gateway closes its round this long before the upstream deadline, to ship its partial


class GatewayRounds(SyncRounds):
    """Synchronous rounds whose version, parameters and deadline come from upstream."""

    def __init__(self, upstream, gateway: str):
        super().__init__()
        self.upstream = upstream
        self.gateway = gateway
        self.taken = -1  # newest version this gateway took
        self.partials_sent = 0

    async def run_update(self) -> dict:
        host = self.host
        try:
            version, params, left_s, hyper, generation, share = await self.upstream.next_round(
                self.gateway, self.taken, host.trainer_capacity(), host.share_version())
            host.incoming_share = share  # new data adopted below is allocated within it from the start
            if generation != host.generation or params.shape != host.params.shape:
                # weights, network or data changed at some gateway since: take the project's first (shared.py)
                adopt(host, await self.upstream.state())
                host.generation = generation
            host.follow(version, params, hyper)
            if share is not None:  # before this round's joins: new trainers are allocated within the new share
                host.take_share(share)
            host.incoming_share = None
        except (MlitbError, ValueError) as err:  # the project is stopping, or changed again while we took its state:
            log.info("gateway %s: no round: %s", self.gateway, err)  # no round, no record; the loop asks again
            host.incoming_share = None
            host.generation = -1
            await asyncio.sleep(UPSTREAM_PAUSE_S)
            return {}
        self.taken = version
        stats = host.begin_update()
        self._round_starts[version] = stats.started
        rule = host.hyper  # the round's rule, as the project opened it: a change made during the round is for the next
        self._stats, self._acc = stats, make_aggregator(rule, host.param_count)
        self._all_answered.clear()
        self.open_version = version
        self._pending = set(host.trainer_ids())
        host.broadcast(self._pending)
        stats.trainers = len(host.trainer_ids())
        self._check_all_answered()
        try:
            await asyncio.wait_for(self._all_answered.wait(), timeout=max(0.0, left_s - SEND_MARGIN_S))
        except asyncio.TimeoutError:
            pass
        self.open_version = None
        acc = self._acc
        try:  # the mean is pre-reduced to one sum; the robust rules need the votes (mlitb/cluster/votes.py)
            sent = (Partial.of(self.gateway, version, acc) if rule.aggregation == "mean"
                    else Votes.of(self.gateway, version, acc, rule))
            await self.upstream.submit(sent)
            self.partials_sent += 1
        except MlitbError as err:  # late (the round closed without us) or refused: this round's work is lost
            log.warning("gateway %s: partial of round %s refused: %s", self.gateway, version, err)
        return host.finish_update(stats, Forwarded(acc.samples, acc.loss_sum, acc.contributions))


class Forwarded:
    """What a gateway's own round record reads of its aggregate: the counts. The rule runs upstream, so the gateway
    does not compute it (a robust rule's mean would cost a round's worth of CPU for nothing)."""

    def __init__(self, samples: int, loss_sum: float, contributions: int):
        self.samples, self.loss_sum, self.contributions = samples, loss_sum, contributions

    def mean(self) -> np.ndarray:
        return np.empty(0, np.float32)  # taken by GatewayRuntime.apply_update, which ignores it


class GatewayRuntime(ProjectRuntime):
    """A project runtime at a gateway: clients, checks and telemetry of its own; parameters from upstream."""

    bounds_votes = False  # its votes are forwarded and bounded in the project's process

    def __init__(self, *args, upstream, gateway: str, **kw):
        super().__init__(*args, strategy=GatewayRounds(upstream, gateway), **kw)
        self.generation = 0  # of the project's weights, network and data this gateway has (shared.py)
        self._sharing: list[asyncio.Task] = []
        self._data_share: tuple | None = None  # (version, allocator, size) of the data share its allocator works within
        self.incoming_share: tuple | None = None  # the share handed with the round being taken

    # ---- this gateway's share of the training data (mlitb/cluster/shares.py) ------------------------------------
    def trainer_capacity(self) -> int:
        """What this gateway's trainers can hold, reported to the project, which sizes the gateway's share by it.
        Read by the hello thread too, hence over a copy of the clients."""
        return self.allocator.capacity * sum(1 for c in list(self.clients.values()) if c.role == "trainer")

    def share_version(self) -> int | None:
        """The version of the share the allocator works within; None once the allocator changed since (new data,
        or appended examples the project has not placed yet): the project then hands the share again."""
        if self._data_share is None:
            return None
        version, allocator, size = self._data_share
        return version if allocator is self.allocator and allocator.size == size else None

    def take_share(self, share: tuple[int, int, np.ndarray]) -> None:
        """Allocate within the project's share (version, data size it is of, ids) from now on; trainers losing
        ids hear it with this round's ALLOC frames."""
        version, size, ids = share
        self.allocator.restrict(ids, size)
        self._data_share = (version, self.allocator, size)

    def new_allocator(self, dataset):
        """New data taken from the project (`adopt`) is allocated within the share handed with the same round, so
        the trainers' first ALLOC of it is already of this gateway's share."""
        allocator = super().new_allocator(dataset)
        share = self.incoming_share
        if share is not None and share[1] == allocator.size:
            allocator.restrict(share[2], share[1])
            self._data_share = (share[0], allocator, share[1])
        elif share is None and not self.allocator.whole:
            # uploaded here while other gateways share the data: nothing until the project hands this gateway its
            # share of the new data (next round), which another gateway may hold from its first round on
            allocator.restrict(np.zeros(0, np.uint32), allocator.size)
        return allocator

    # ---- changes every gateway must see: here at once, and sent to the project (shared.py) ----------------------
    def load_weights(self, params: np.ndarray) -> None:
        super().load_weights(params)  # refused while this gateway has trainers; the project checks the others'
        self._share(self.strategy.upstream.load_weights(self.params.copy()))

    def change_model_and_data(self, layers: list[dict], dataset) -> int:
        example = last_example(dataset)  # the examples route adds one picture at a time
        out = super().change_model_and_data(layers, dataset)
        self._share(self.strategy.upstream.add_example(example.label, example.image))
        return out

    def attach_data(self, dataset) -> None:
        train = self.dataset is None or dataset.train is not self.dataset.train  # the uploads route keeps it for test
        super().attach_data(dataset)
        self._share(self.strategy.upstream.attach_data(dataset, train))

    def _share(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._sharing.append(task)
        task.add_done_callback(self._shared)

    def _shared(self, task: asyncio.Task) -> None:
        self._sharing.remove(task)
        if not task.cancelled() and task.exception() is not None:
            # refused upstream: this gateway takes the project's state again with its next round
            self.generation = -1
            log.error("project %s: a change was not taken upstream: %s", self.id, task.exception())

    async def shared(self) -> None:
        """Waits for the changes sent upstream; raises the project's refusal (MlitbError) if there was one."""
        for task in list(self._sharing):
            await asyncio.wait([task])
            if not task.cancelled() and isinstance(task.exception(), MlitbError):
                raise task.exception()

    def follow(self, version: int, params: np.ndarray, hyper=None) -> None:
        """Take the upstream's version, parameters and hyper-parameters (arrays are replaced, never written)."""
        params = np.asarray(params, dtype=np.float32)
        if params.shape != self.params.shape:
            raise ValueError(f"upstream sent {params.size} parameters; the network has {self.params.size}")
        self._params, self._round = params, version
        if hyper is not None and hyper != self.hyper:
            super().change_hyper(hyper)

    def change_hyper(self, hyper) -> None:
        """PATCH .../hyper at this gateway: in force here at once and sent upstream, which hands it to the other
        gateways with the next round (and stores it)."""
        super().change_hyper(hyper)
        task = asyncio.get_running_loop().create_task(self.strategy.upstream.set_hyper(hyper))
        task.add_done_callback(lambda t: t.cancelled() or not t.exception() or
                               log.error("project %s: hyper change not sent upstream", self.id, exc_info=t.exception()))

    def apply_update(self, update: np.ndarray) -> bool:
        return True  # the step is taken upstream; the next round's parameters come with `follow`

    def advance(self) -> None:
        pass  # the version is the upstream's (set by `follow`)


class GatewayRegistry(ProjectRegistry):
    """The projects one gateway serves: each a `GatewayRuntime` on `upstream_for(project id)`. No store: the
    project's state, checkpoints included, lives upstream; its data comes from upstream once (`add`), so a
    gateway on another host never reads a file it cannot see."""

    def __init__(self, settings, gateway: str, upstream_for):
        self.gateway = gateway
        self.upstream_for = upstream_for
        super().__init__(settings, None)

    def add(self, project_id: int, spec: dict, dataset, owner_hash: str | None = None,
            invite_hash: str | None = None) -> GatewayRuntime:
        parsed = parse_project_spec(spec)
        runtime = GatewayRuntime(project_id, parsed, parsed.build_network(), dataset, self.settings,
                                 upstream=self.upstream_for(project_id), gateway=self.gateway)
        runtime.grant(owner_hash, invite_hash)
        self.projects[project_id] = runtime
        self._next_id = max(self._next_id, project_id + 1)
        self._start(runtime)
        return runtime

    async def checkpoint(self, runtime) -> None:
        """The project's state is stored upstream: here a checkpoint waits until the gateway's changes are taken
        there, so a route that stores a change (weights) answers with the project's refusal, if any."""
        await runtime.shared()

    def create(self, body, examples=()):
        raise MlitbError(ErrorCode.FORBIDDEN, "in cluster mode projects are created where the cluster starts: "
                         "mlitb serve --ray --new-project SPEC.json")

    def delete(self, project_id: int) -> None:
        raise MlitbError(ErrorCode.FORBIDDEN, "in cluster mode a gateway does not delete projects")
