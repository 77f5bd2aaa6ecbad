"""The project runtime (MLitB §3.3): the host of one project's training, which drives a `Strategy`.

The runtime owns what does not depend on how results become updates: membership and data allocation
(a/b), each trainer's work time from its estimates (d, `scheduler.py`), frames out (e: one encoded
PARAMS frame shared by every client), the checks that turn a client frame into a `Result`, the model
and its version, the server optimizer (c: AdaGrad with L1/L2, `mlitb/training/optimizers.py`), checkpoints,
the closure record, model growth and telemetry. The strategy (`mlitb/training/strategies/`; synchronous
time-boxed rounds by default) decides when results become an update. Only the runtime writes its state:
weight upload, hyper-parameter changes, restore and model growth are methods here, each keeping the closure
record, the optimizer state and the metrics consistent. The runtime reaches clients only through `Link`s,
so it runs the same over WebSockets and in memory.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Awaitable, Callable

import numpy as np

from mlitb.codec import link as codec_link
from mlitb.config import Settings
from mlitb.data import Dataset
from mlitb.errors import ErrorCode, MlitbError
from mlitb.master import scheduler
from mlitb.master.allocator import Allocator
from mlitb.master.changes import DataAndModelChanges
from mlitb.master.model_state import ModelState
from mlitb.master.params_out import ParamsOut
from mlitb.master.project import Hyper, ProjectSpec
from mlitb.master.scheduler import Client, IngestClock
from mlitb.master.telemetry import Telemetry, TelemetryViews
from mlitb.master.trust_hooks import TrustHooks
from mlitb.master.transport import Link
from mlitb.model import Network
from mlitb.protocol import Frame, MessageType, encode
from mlitb.training.optimizers import ServerOptimizer
from mlitb.training.strategies import Result, Strategy, UpdateStats, make_strategy
from mlitb.trust.addresses import AddressPolicy
from mlitb.trust.claims import measured_rate
from mlitb.trust.credit import CreditLedger, volunteer_id
from mlitb.trust.credited import Credited
from mlitb.trust.spot_check import SpotChecked

log = logging.getLogger("mlitb.master")

__all__ = ["Client", "ProjectRuntime"]


class ProjectRuntime(TrustHooks, DataAndModelChanges, ModelState, TelemetryViews):
    def __init__(self, project_id: int, spec: ProjectSpec, network: Network, dataset: Dataset | None,
                 settings: Settings, params: np.ndarray | None = None, clock=time.monotonic,
                 on_checkpoint: Callable[["ProjectRuntime"], Awaitable[None]] | None = None,
                 strategy: Strategy | None = None, optimizer: ServerOptimizer | None = None):
        super().__init__(spec, network, params, optimizer)
        self.id = project_id
        self._dataset = dataset
        self.settings = settings
        self.clock = clock
        self.on_checkpoint = on_checkpoint  # awaited every `settings.checkpoint_every` updates
        self.clients: dict[int, Client] = {}
        self._client_ids = itertools.count(1)  # per runtime: two runtimes in one process share nothing
        self._allocator = Allocator(len(dataset.train) if dataset else 0, self.capacity_for(dataset))
        self.telemetry = Telemetry()
        self.meter = self.telemetry.meter  # the transports count message bytes here
        self.ingest = IngestClock()
        self.addresses = AddressPolicy(settings, project_id)
        self.credit = CreditLedger()
        # spot checks, quarantine and credit wrap the strategy's result handling, whichever strategy it is
        self.spot = SpotChecked(strategy or make_strategy(spec.hyper), self.credit, self._recompute,
                                tolerance=self._tolerance, late_strike=self._late_strike, committed=self._committed)
        self.strategy: Strategy = Credited(self.spot, self.credit)
        self.strategy.bind(self)
        self._stats: UpdateStats | None = None  # telemetry of the update in progress (or the last one)
        self._wake = asyncio.Event()
        self._stopped = False
        self.params_out = ParamsOut(spec.hyper)  # PARAMS frames: dense, or shadow deltas under a download codec

    # ---- read-only views -----------------------------------------------------------------------
    @property
    def max_frame_bytes(self) -> int:
        """Largest frame a client may send to this project: a header plus one gradient."""
        return 24 + 4 * self.param_count

    @property
    def allocator(self) -> Allocator:
        """Who holds which example ids (replaced when new data is attached)."""
        return self._allocator

    @property
    def core_strategy(self) -> Strategy:
        """The strategy that decides updates, inside the trust wrappers (Credited(SpotChecked(...)))."""
        return self.spot.inner

    @property
    def open_round(self) -> int | None:
        """The version an update is being built for (the open round), None between updates."""
        return self.strategy.open_version

    def trainers(self) -> list[Client]:
        return [c for c in self.clients.values() if c.role == "trainer" and c.admitted]

    def trainer_addresses(self) -> list[str | None]:
        return [c.address for c in self.clients.values() if c.role == "trainer"]

    def trainer_ids(self) -> list[int]:
        return [c.id for c in self.clients.values() if c.role == "trainer" and c.admitted]

    # ---- clients --------------------------------------------------------------------------------
    def add_client(self, link: Link, role: str, backend: str, address: str | None = None,
                   volunteer_key: str | None = None, pow_solution: str | None = None) -> Client:
        """A new worker; raises TOO_MANY_TRAINERS_FROM_ADDRESS past the per-address trainer cap, POW_REQUIRED or
        POW_INVALID without the proof of work its address owes, QUARANTINED for a quarantined volunteer key. A
        trainer with a volunteer key earns credit under its public id."""
        if role == "trainer":
            self.addresses.admit(address, self.trainer_addresses(), self.spec.max_trainers_per_address, pow_solution)
        client = Client(next(self._client_ids), role, backend, link, address=address)
        client.vote = self.addresses.vote(address, client.id)
        if role == "trainer" and volunteer_key is not None:
            row = self.credit.rows.get(volunteer_id(volunteer_key))
            if row is not None and row.quarantined:
                raise MlitbError(ErrorCode.QUARANTINED, "this volunteer's results failed spot checks")
            client.volunteer = volunteer_id(volunteer_key)
            self.credit.join(client.id, client.volunteer)
        client.max_samples = scheduler.max_samples(client, self.settings.max_samples_per_s)
        client.allowed_samples = self._allowed_samples(client, None)
        self.clients[client.id] = client
        if role == "tracker":
            client.admitted = True
            link.send(self.params_frame())
            self.params_out.mark(client.id)
        self._wake.set()
        return client

    def remove_client(self, client_id: int) -> None:
        client = self.clients.pop(client_id, None)
        self.params_out.forget(client_id)
        if client is None:
            return
        if client.role == "trainer" and client.admitted:
            self.allocator.leave(client_id)
            self._send_allocations()
        self.strategy.on_leave(client_id)
        self.credit.leave(client_id)

    def _send_allocations(self) -> None:
        for tid in self.allocator.take_changed():
            client = self.clients.get(tid)
            if client is None:
                continue
            ids = self.allocator.ids_of(tid)
            client.alloc_size = len(ids)
            self._send(client, encode(MessageType.ALLOC, project=self.id, round=self.round, count=len(ids), payload=ids))

    def _send(self, client: Client, frame: bytes) -> None:
        if not client.link.send(frame):
            log.warning("project %s: client %s is too far behind; dropping it", self.id, client.id)
            client.link.close(1008, "too far behind")
            self.remove_client(client.id)

    def params_frame(self) -> bytes:
        """The parameters clients hold as one dense PARAMS frame (ParamsOut.dense)."""
        return self.params_out.dense(self.id, self.round, self.params)

    def _send_params(self, client: Client, frame: bytes) -> None:
        if self._stats is not None:
            self._stats.down_bytes += len(frame)
            self._stats.down_frames += 1
        self._send(client, frame)

    def _params_replaced(self) -> None:  # weights upload, restore, growth: clients get the parameters dense next
        self.params_out.reset()

    # ---- incoming frames ------------------------------------------------------------------------
    def on_frame(self, client_id: int, frame: Frame) -> None:
        """Apply one decoded frame from a joined client; raises MlitbError on any violation."""
        client = self.clients.get(client_id)
        if client is None:
            raise MlitbError(ErrorCode.NOT_JOINED)
        if frame.project != self.id:
            raise MlitbError(ErrorCode.WRONG_PROJECT, f"joined project {self.id}, frame names {frame.project}")
        if frame.type == MessageType.GRADIENT:
            self.strategy.on_result(self._result_of(client, frame))
        elif frame.type == MessageType.EVAL:
            self._on_eval(client, frame)
        else:
            raise MlitbError(ErrorCode.UNKNOWN_MESSAGE, f"{frame.type.name} is not accepted after joining")

    def _result_of(self, client: Client, frame: Frame) -> Result:
        """The frame as a `Result`, after the role, length (the codec's), sample-count and loss checks; its values are checked
        for finiteness where the strategy adds them. A count above the client's allowance (mlitb/trust/claims.py)
        is cut to it, the sum and loss scaled alike (a copy), and counted as clamped."""
        if client.role != "trainer":
            raise MlitbError(ErrorCode.WRONG_ROLE, "only trainers send gradients")
        # the project's upload policy first (dense, or its codec within its density: mlitb/codec/link.py), then
        # the frame's payload kind decodes it (mlitb.codec): dense is a view
        codec_link.check_upload(frame.kind, frame.payload, self.param_count, self.hyper, frame.round)
        grad = frame.vector(self.param_count)
        if not 1 <= frame.count <= client.max_samples:
            raise MlitbError(ErrorCode.BAD_SAMPLE_COUNT, f"{frame.count} samples; allowed 1..{client.max_samples}")
        if frame.value < 0:
            raise MlitbError(ErrorCode.BAD_VALUE, "summed loss must not be negative")
        if self._stats is not None:
            self._stats.up_bytes += 24 + len(frame.payload)
        count, loss = frame.count, frame.value
        client.claimed_samples = count
        if count > client.allowed_samples:
            share = client.allowed_samples / count
            grad, count, loss = grad * np.float32(share), client.allowed_samples, loss * share
            if self._stats is not None:
                self._stats.clamped += 1
        return Result(client.id, frame.round, grad, count, loss, frame.aux, client.vote, self._commitment_of(frame),
                      self.clock())

    def _on_eval(self, client: Client, frame: Frame) -> None:
        if client.role != "tracker":
            raise MlitbError(ErrorCode.WRONG_ROLE, "only trackers send evaluations")
        if not 0.0 <= frame.value <= 1.0 or frame.count < 1:
            raise MlitbError(ErrorCode.BAD_VALUE, "test error must be in [0, 1] over at least one example")
        if frame.round > self.round:
            raise MlitbError(ErrorCode.STALE_ROUND, f"evaluation of future round {frame.round}")
        self.note_evaluation(frame.round, float(frame.value), frame.count)

    def note_rejected(self) -> None:
        """Count a frame refused by validation in this update's metrics."""
        self.telemetry.rejected_total += 1
        if self._stats is not None:
            self._stats.rejected += 1

    # ---- the Host interface of strategies (mlitb/training/strategies/base.py) ---------------------
    @property
    def hyper(self) -> Hyper:
        return self._spec.hyper

    def begin_update(self) -> UpdateStats:
        if self._pending_change is not None:
            self._apply_change()
        for c in self.clients.values():
            if c.role == "trainer" and not c.admitted:
                c.admitted = True
                self.allocator.join(c.id)
        refreshed = 0
        if self.round and self.round % self.settings.refresh_every == 0:
            # data refreshment: when the data exceeds what the trainers can hold, swap a share of
            # their ids for unallocated ones, so every example is eventually trained on
            refreshed = self.allocator.refresh(self.settings.refresh_fraction)
        self._send_allocations()
        self._start_reference()
        self._stats = stats = UpdateStats(self.round, self.clock(), refreshed=refreshed)
        self.telemetry.begin()
        self.ingest.start()
        return stats

    def broadcast(self, due: set[int]) -> None:
        self._start_version()
        # the k-th of n due trainers (in the order the parameters go out) is due (n - 1 - k) ingest times before
        # the last, so the server takes the results in turn rather than all at the deadline
        n = len(due)
        ingest_ms = self.ingest.stagger_ms(n, self.hyper.period_s)
        fleet_sps = self._fleet_rate()
        k = 0
        for c in list(self.clients.values()):
            if c.role == "trainer":
                self._send_work(c, self.params_out.frames_for(c.id), (n - 1 - k) * ingest_ms if c.id in due else 0.0,
                                fleet_sps)
                k += c.id in due
        self._to_trackers()

    def dispatch(self, client_id: int) -> None:
        client = self.clients.get(client_id)
        if client is None:
            return
        out = self.params_out
        if out.coded:  # the shadow follows every version: a client gets the deltas it misses
            self._start_version()
        frames = out.frames_for(client.id) if out.coded else [self.params_frame()]
        out.mark(client.id)
        self._send_work(client, frames, 0.0, self._fleet_rate())

    def publish(self) -> None:
        self._start_version()
        self._to_trackers()

    def _start_version(self) -> None:
        """This version's PARAMS frames; the record keeps what clients compute on (the shadow, under a codec)."""
        self.record.broadcast(self.round, self.params_out.start(self.id, self.round, self.params))

    def _to_trackers(self) -> None:
        for c in list(self.clients.values()):
            if c.role == "tracker":
                for frame in self.params_out.frames_for(c.id):
                    self._send_params(c, frame)

    def _send_work(self, c: Client, params: list[bytes], queue_ms: float, fleet_sps: float | None) -> None:
        c.work_ms = self.work_ms_for(c, queue_ms)
        c.max_samples = scheduler.max_samples(c, self.settings.max_samples_per_s)
        c.allowed_samples = self._allowed_samples(c, fleet_sps)
        chosen = self._chosen_ids(c)
        seed = self._work_seed(c) if len(chosen) == 0 else 0  # 0: not spot-checked
        for frame in params:
            self._send_params(c, frame)
        self._send(c, encode(MessageType.WORK, project=self.id, round=self.round, count=seed, aux=c.work_ms,
                             payload=chosen))

    def observe(self, result: Result, since: float, stats: UpdateStats | None = None) -> float:
        client = self.clients.get(result.client_id)
        # from its arrival: a spot check of the result (up to a burst of the master's CPU) is not the trainer's latency
        elapsed_s = (self.clock() if result.arrived is None else result.arrived) - since
        latency = 0.0
        if client is not None:  # the processing rate sets work times only: it follows the claimed count (the
            # scheduler's estimate is capped at max_samples_per_s), while weight and credit follow the allowed one
            client.measured_sps = measured_rate(result.samples, elapsed_s, client.work_ms)
            latency = scheduler.observe(client, client.claimed_samples, result.compute_ms, elapsed_s * 1000,
                                        self.settings.max_samples_per_s)
        if stats is not None:
            stats.latencies.append(latency)
            self.ingest.took_one(stats.ingest)
        return latency

    def count_late(self, applied: bool) -> None:
        self.telemetry.late_total += 1
        if applied:
            self.telemetry.late_applied_total += 1

    def record_contribution(self, result: Result):
        if not self.hyper.deterministic:
            return None
        return self.record.contribution(result.client_id, result.samples, result.loss_sum)

    def record_reduced(self, token) -> None:
        self.record.reduced(token)

    def finish_update(self, stats: UpdateStats, aggregate) -> dict:
        hyper = self.hyper
        step_skipped = False
        bounded = self._bound_votes(aggregate) if aggregate.samples > 0 else 0
        if aggregate.samples > 0 and not self.apply_update(aggregate.mean()):
            step_skipped = True
            log.warning("project %s round %s: step skipped, it would make the model non-finite", self.id, stats.round)
        self.ingest.close(stats.ingest)
        spot = self.spot.stats
        record = self.telemetry.record(
            stats, aggregate, self.clock() - stats.started, step_skipped, hyper, latest_eval=self.latest_eval,
            ingest_s=self.ingest.seconds, unallocated=self.allocator.unallocated_with_room(),
            classes=self.network.num_classes)
        record.update(spot_checks_total=spot.checks, spot_check_failures_total=spot.failed,
                      spot_check_cpu_s_total=round(spot.cpu_s, 4), spot_check_worst=spot.worst,
                      spot_check_samples_total=spot.samples, quarantined_total=spot.quarantined, votes_bounded=bounded,
                      spot_checks_deferred_total=spot.deferred, spot_checks_probation_total=spot.probation,
                      spot_checks_pending=self.spot.pending, spot_check_tolerance=self._tolerance(),
                      spot_checks_committed_total=spot.committed, spot_checks_batch_total=spot.batch_checks,
                      spot_check_commit_cpu_s_total=round(spot.commit_cpu_s, 4))
        self._metrics.append(record)
        self.record.close_round(stats.round, step_skipped, hyper.deterministic)
        self.advance()
        return record

    # ---- work times -------------------------------------------------------------------------------
    def work_ms_for(self, client: Client, queue_ms: float = 0.0) -> int:
        """The client's compute time for its next work (scheduler.work_ms_for with this project's settings)."""
        return scheduler.work_ms_for(client, self.hyper.period_s, self.hyper.batch_size, self.settings.min_work_ms,
                                     queue_ms)

    def _chosen_ids(self, client: Client) -> np.ndarray | bytes:
        """Deterministic mode: the examples the trainer must use this round (sent in WORK; docs/closure.md)."""
        hyper = self.hyper
        held = self.allocator.ids_of(client.id) if hyper.deterministic else ()
        if len(held) == 0:
            return b""
        return self.record.name_examples(self.spec.seed, self.round, client.id, held, hyper.samples_per_round)

    def load_weights(self, params: np.ndarray) -> None:
        """Replace the parameters with loaded weights (PUT .../weights.bin), only while no trainer is connected
        (an update would replace them when it closes). See ModelState.replace_params."""
        if self.open_round is not None or any(c.role == "trainer" for c in self.clients.values()):
            raise MlitbError(ErrorCode.TRAINING_RUNNING, "the project has trainers: stop them before replacing its weights")
        self.replace_params(params)

    # ---- running ----------------------------------------------------------------------------------
    def stop(self) -> None:
        self._stopped = True
        self._wake.set()
        self.strategy.stop()

    async def run(self) -> None:
        while not self._stopped:
            if not any(c.role == "trainer" for c in self.clients.values()):
                self._wake.clear()
                await self._wake.wait()
                continue
            await self.run_round()
            if self.on_checkpoint and self.round % self.settings.checkpoint_every == 0:
                await self.on_checkpoint(self)

    async def run_round(self) -> dict:
        """Drive the strategy to its next update (one round, in synchronous mode); returns its metrics record."""
        return await self.strategy.run_update()
