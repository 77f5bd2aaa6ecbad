"""The master event loop of one project (MLitB §3.3): synchronised, time-boxed rounds.

Each round: (a/b) admit new trainers and allocate data; (e) broadcast the parameters
(one encoded frame shared by every client) and each trainer's work time; collect
gradient sums until every trainer answered or the deadline passed, adding each into one
accumulator as it arrives; (c) reduce to the sample-weighted mean and take an AdaGrad
step with L1/L2; (d) update each trainer's latency and processing-rate estimates, which
set its next work time (`work_ms_for`): T minus its round-trip latency, one mini-batch at
its measured rate (a clock-bounded trainer may finish one batch past its work time), a
safety margin and its place in the ingest queue, so all results arrive by the deadline:
the server takes each gradient in turn (measured: its CPU time per gradient), so the
trainers' arrivals are staggered one ingest time apart, in the order the parameters went
out, instead of all landing at once at the deadline. A gradient that arrives after its
round closed is dropped or, by the project's `late_policy`, added to the open round with
a staleness weight; either way it is counted as late. The loop reaches clients only
through `Link`s, so it runs the same over WebSockets and in memory.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

import numpy as np

from mlitb.config import Settings
from mlitb.data import Dataset
from mlitb.errors import ErrorCode, MlitbError
from mlitb.master.allocator import Allocator
from mlitb.master.closure_record import ROUNDS_REMEMBERED, ClosureRecord
from mlitb.master.project import ProjectSpec
from mlitb.master.transport import Link
from mlitb.model import Network, glorot_init
from mlitb.model.grow import grow_arrays
from mlitb.protocol import DataInfo, Frame, MessageType, Welcome, encode
from mlitb.training import adagrad_step, make_aggregator
from mlitb.trust.addresses import AddressPolicy
from mlitb.trust.claims import allowed_samples, measured_rate, median_rate
from mlitb.training.aggregate import all_finite

log = logging.getLogger("mlitb.master")
FLOAT32_LE = np.dtype("<f4")  # a dtype object: np.frombuffer parses a dtype string on every call
_client_ids = itertools.count(1)
LATENCY_SMOOTHING = 0.3  # weight of the newest latency sample in the moving average (when it falls)
INGEST_SMOOTHING = 0.3  # weight of the newest per-gradient ingest time in the moving average (when it falls)
MAX_INGEST_SHARE = 0.5  # the staggered arrivals span at most this share of the period
RATE_SMOOTHING = 0.3  # weight of the newest processing-rate sample in the moving average
SLOWDOWN_RATIO = 0.5  # a rate sample below this share of the estimate replaces it at once


@dataclass
class Client:
    id: int
    role: str
    backend: str
    link: Link
    admitted: bool = False
    latency_ms: float = 100.0  # round trip estimate (send params -> gradient back, minus compute)
    rate_sps: float | None = None  # processing rate estimate: samples per second of compute
    work_ms: int = 0
    max_samples: int = 1  # most samples a gradient may claim: max_samples_per_s x max(work time, 1 s)
    allowed_samples: int = 1  # most samples it counts for, from measured rates (mlitb/trust/claims.py)
    measured_sps: float | None = None  # accepted samples per wall second of its last result
    address: str | None = None  # the peer's IP address (None: in memory)
    vote: object = None  # robust rules sum the results of one vote first (mlitb/trust/addresses.py)
    alloc_size: int = 0
    answered_round: int = -1
    applied_round: int = -1  # newest round whose gradient was applied (on time or late)
    last_samples: int = 0


@dataclass
class RoundStats:
    round: int
    started: float
    trainers: int = 0
    latencies: list[float] = field(default_factory=list)
    rejected: int = 0
    clamped: int = 0  # results whose sample count was cut to the allowance
    late: int = 0
    refreshed: int = 0
    late_applied: int = 0
    ingest: list[float] = field(default_factory=list)  # server thread CPU s between consecutive gradients


class ProjectRuntime:
    def __init__(self, project_id: int, spec: ProjectSpec, network: Network, dataset: Dataset | None,
                 settings: Settings, params: np.ndarray | None = None, clock=time.monotonic,
                 on_checkpoint: Callable[["ProjectRuntime"], Awaitable[None]] | None = None):
        self.id = project_id
        self.spec = spec
        self.network = network
        self._param_count: tuple[Network, int] | None = None
        self.dataset = dataset
        self.settings = settings
        self.clock = clock
        self.params = glorot_init(network, spec.seed) if params is None else params.astype(np.float32)
        self.history = np.zeros_like(self.params)
        self.on_checkpoint = on_checkpoint  # awaited every `settings.checkpoint_every` rounds
        self.checkpointed_round = -1  # metrics up to this round are stored
        self.round = 0
        self.open_round: int | None = None
        self.metrics: list[dict] = []
        self.clients: dict[int, Client] = {}
        self.allocator = Allocator(len(dataset.train) if dataset else 0, self.capacity_for(dataset))
        self.latest_eval: tuple[int, float] | None = None  # (round evaluated, test error)
        self._acc = make_aggregator(self.spec.hyper, self.param_count)
        self.addresses = AddressPolicy(settings)
        self._stats: RoundStats | None = None
        self._all_answered = asyncio.Event()
        self._wake = asyncio.Event()
        self._stopped = False
        self.rejected_total = 0
        # cumulative counters (Prometheus); the WebSocket endpoint adds the bytes of each message
        self.samples_total = 0
        self.late_total = 0
        self.late_applied_total = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self._marks: tuple[float, int, int] | None = None  # (CPU s, bytes in, bytes out) at the last close
        self._pending: set[int] = set()  # admitted trainers yet to answer the open round
        self.ingest_s = 0.0  # estimated server CPU time to take in one gradient (the loop's thread)
        self._ingest_mark: float | None = None
        self._round_starts: dict[int, float] = {}
        self.owner_hash: str | None = None  # SHA-256 of the owner token (set by the registry)
        self.record = ClosureRecord(self.round, self.params, self.history)  # for research closures
        self.invite_hash: str | None = None  # SHA-256 of the invite token of a private project
        # examples labelled on the fly (mlitb/server/examples.py): the network layers and data they make,
        # applied between rounds (never mid-round: every gradient of a round has the same size)
        self._pending_change: tuple[list[dict], Dataset] | None = None

    # ---- limits derived from the model -------------------------------------------------
    @property
    def param_count(self) -> int:
        cached = self._param_count  # summing the weight shapes costs ~30 us: once per network, not per frame
        if cached is None or cached[0] is not self.network:
            cached = self._param_count = (self.network, self.network.param_count)
        return cached[1]

    @property
    def max_frame_bytes(self) -> int:
        """Largest frame a client may send to this project: a header plus one gradient."""
        return 24 + 4 * self.param_count

    def trainers(self) -> list[Client]:
        return [c for c in self.clients.values() if c.role == "trainer" and c.admitted]

    # ---- clients --------------------------------------------------------------------------
    def add_client(self, link: Link, role: str, backend: str, address: str | None = None) -> Client:
        """A new worker; raises TOO_MANY_TRAINERS_FROM_ADDRESS past the per-address trainer cap."""
        if role == "trainer":
            self.addresses.admit(address, [c.address for c in self.clients.values() if c.role == "trainer"],
                                 self.spec.max_trainers_per_address)
        client = Client(next(_client_ids), role, backend, link, address=address)
        client.vote = self.addresses.vote(address, client.id)
        client.max_samples = self._max_samples(client)
        client.allowed_samples = self._allowed_samples(client, None)
        self.clients[client.id] = client
        if role == "tracker":
            client.admitted = True
            link.send(self.params_frame())
        self._wake.set()
        return client

    def remove_client(self, client_id: int) -> None:
        client = self.clients.pop(client_id, None)
        if client is None:
            return
        if client.role == "trainer" and client.admitted:
            self.allocator.leave(client_id)
            self._send_allocations()
        self._pending.discard(client_id)
        self._check_all_answered()

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
        return encode(MessageType.PARAMS, project=self.id, round=self.round, count=self.param_count, payload=self.params)

    # ---- incoming frames ---------------------------------------------------------------------
    def on_frame(self, client_id: int, frame: Frame) -> None:
        """Apply one decoded frame from a joined client; raises MlitbError on any violation."""
        client = self.clients.get(client_id)
        if client is None:
            raise MlitbError(ErrorCode.NOT_JOINED)
        if frame.project != self.id:
            raise MlitbError(ErrorCode.WRONG_PROJECT, f"joined project {self.id}, frame names {frame.project}")
        if frame.type == MessageType.GRADIENT:
            self._on_gradient(client, frame)
        elif frame.type == MessageType.EVAL:
            self._on_eval(client, frame)
        else:
            raise MlitbError(ErrorCode.UNKNOWN_MESSAGE, f"{frame.type.name} is not accepted after joining")

    def _on_gradient(self, client: Client, frame: Frame) -> None:
        if client.role != "trainer":
            raise MlitbError(ErrorCode.WRONG_ROLE, "only trainers send gradients")
        stats = self._stats
        if self.open_round is None or frame.round != self.open_round or stats is None:
            self._on_late_gradient(client, frame, stats)
            return
        if client.answered_round == frame.round:
            raise MlitbError(ErrorCode.DUPLICATE_RESULT, f"already have this client's gradient for round {frame.round}")
        grad, count, loss = self._gradient_of(client, frame)
        record = self.record.contribution(client.id, count, loss) if self.spec.hyper.deterministic else None
        # the accumulator checks every value before the add that could change it (block by block for large
        # gradients, so each comes from memory once) and is left unchanged by a gradient it refuses
        if not self._acc.add_finite(grad, count, loss, client.vote):
            raise MlitbError(ErrorCode.NON_FINITE, "gradient holds NaN or infinite values")
        if count < frame.count:
            stats.clamped += 1
        client.measured_sps = measured_rate(count, self.clock() - stats.started, client.work_ms)
        if record is not None:
            self.record.reduced(record)
        client.answered_round = client.applied_round = frame.round
        client.last_samples = count
        stats.latencies.append(self._observe(client, frame, stats.started))
        cpu = time.thread_time()  # includes receiving and decoding this frame, which ran since the last one
        if self._ingest_mark is not None:
            stats.ingest.append(cpu - self._ingest_mark)
        self._ingest_mark = cpu
        pending = self._pending
        pending.discard(client.id)
        if not pending:  # _check_all_answered: the round is open
            self._all_answered.set()

    def _gradient_of(self, client: Client, frame: Frame) -> tuple[np.ndarray, int, float]:
        """The frame's gradient sum (a float32 view), sample count and summed loss, after the length, sample-count
        and loss checks; its values are checked for finiteness where it is added (`add_finite`). A count above
        the client's allowance (mlitb/trust/claims.py) is cut to it, the sum and loss scaled alike (a copy)."""
        payload, param_count = frame.payload, self.param_count
        if len(payload) != 4 * param_count:
            raise MlitbError(ErrorCode.WRONG_LENGTH, f"{len(payload)} bytes; expected {4 * param_count} "
                             f"({param_count} float32)")
        if not 1 <= frame.count <= client.max_samples:
            raise MlitbError(ErrorCode.BAD_SAMPLE_COUNT, f"{frame.count} samples; allowed 1..{client.max_samples}")
        if frame.value < 0:
            raise MlitbError(ErrorCode.BAD_VALUE, "summed loss must not be negative")
        grad, count, loss = np.frombuffer(payload, FLOAT32_LE), frame.count, frame.value
        if count > client.allowed_samples:
            share = client.allowed_samples / count
            grad, count, loss = grad * np.float32(share), client.allowed_samples, loss * share
        return grad, count, loss

    def _max_samples(self, client: Client) -> int:
        return max(1, int(self.settings.max_samples_per_s * max(client.work_ms, 1000) / 1000))

    def _allowed_samples(self, client: Client, fleet_sps: float | None) -> int:
        s = self.settings
        return allowed_samples(client.measured_sps, fleet_sps, client.work_ms, start_sps=s.claim_start_samples_per_s,
                               growth=s.claim_growth, fleet_factor=s.claim_fleet_factor, hard_sps=s.max_samples_per_s)

    def _on_late_gradient(self, client: Client, frame: Frame, stats: RoundStats | None) -> None:
        """A gradient for a closed round is counted as late and still tells how slow its client is (so its next
        work time shrinks). It is refused with STALE_ROUND unless the project's `late_policy` is
        "stale_weighted" and a round is open: then it joins that round's reduce with its sample count (and so
        its share) scaled by `staleness_weight ** rounds_late`."""
        started = self._round_starts.get(frame.round)
        if started is None or stats is None or frame.round >= self.round:
            raise MlitbError(ErrorCode.STALE_ROUND, f"gradient for round {frame.round}; open round is {self.open_round}")
        if frame.round <= client.applied_round:
            raise MlitbError(ErrorCode.DUPLICATE_RESULT, f"already have this client's gradient for round {frame.round}")
        hyper = self.spec.hyper
        apply = hyper.late_policy == "stale_weighted" and self.open_round is not None
        grad, count, loss = self._gradient_of(client, frame) if apply else (None, frame.count, frame.value)
        if grad is not None and not all_finite(grad):
            raise MlitbError(ErrorCode.NON_FINITE, "gradient holds NaN or infinite values")
        stats.late += 1
        self.late_total += 1
        if 1 <= frame.count <= client.max_samples:
            self._observe(client, frame, started)
        if grad is None:
            raise MlitbError(ErrorCode.STALE_ROUND, f"gradient for round {frame.round}; open round is {self.open_round}")
        weight = hyper.staleness_weight ** (self.open_round - frame.round)
        samples = max(1, round(count * weight))
        scale = samples / count
        self._acc.add(grad * np.float32(scale), samples, loss * scale, client.vote)
        client.applied_round = frame.round
        stats.late_applied += 1
        self.late_applied_total += 1

    def _observe(self, client: Client, frame: Frame, round_started: float) -> float:
        """Update the client's processing-rate and latency estimates from one gradient; returns the latency."""
        if frame.aux > 0:
            self._observe_rate(client, min(frame.count * 1000.0 / frame.aux, float(self.settings.max_samples_per_s)))
        return self._observe_latency(client, (self.clock() - round_started) * 1000 - frame.aux)

    @staticmethod
    def _observe_latency(client: Client, sample_ms: float) -> float:
        """The estimate rises at once (a trainer that slowed should not be late twice) and falls by a moving
        average."""
        sample_ms = max(0.0, sample_ms)
        if sample_ms >= client.latency_ms:
            client.latency_ms = sample_ms
        else:
            client.latency_ms += LATENCY_SMOOTHING * (sample_ms - client.latency_ms)
        return sample_ms

    @staticmethod
    def _observe_rate(client: Client, samples_per_s: float) -> None:
        """Moving average of the processing rate; a slow-down (a busy tab, a throttled device) replaces it at once."""
        old = client.rate_sps
        if old is None or samples_per_s < SLOWDOWN_RATIO * old:
            client.rate_sps = samples_per_s
        else:
            client.rate_sps = (1 - RATE_SMOOTHING) * old + RATE_SMOOTHING * samples_per_s

    def _on_eval(self, client: Client, frame: Frame) -> None:
        if client.role != "tracker":
            raise MlitbError(ErrorCode.WRONG_ROLE, "only trackers send evaluations")
        if not 0.0 <= frame.value <= 1.0 or frame.count < 1:
            raise MlitbError(ErrorCode.BAD_VALUE, "test error must be in [0, 1] over at least one example")
        if frame.round > self.round:
            raise MlitbError(ErrorCode.STALE_ROUND, f"evaluation of future round {frame.round}")
        if self.latest_eval is None or frame.round >= self.latest_eval[0]:
            self.latest_eval = (frame.round, float(frame.value))
            self.record.evaluation(frame.round, frame.value, frame.count)
        for m in reversed(self.metrics):
            if m["round"] == frame.round:
                m["test_error_of_round"] = float(frame.value)
                break

    def capacity_for(self, dataset: Dataset | None) -> int:
        """Examples one trainer may hold: the id cap, and what fits in its byte budget."""
        if dataset is None:
            return self.settings.trainer_capacity
        per_example = int(np.prod(dataset.shape)) + 1
        return max(1, min(self.settings.trainer_capacity, self.settings.trainer_bytes // per_example))

    def welcome(self, client: Client) -> Welcome:
        """What a worker learns on joining: its id, the model, the period and where the data is."""
        ds, base = self.dataset, f"/api/projects/{self.id}"
        data_base = f"{(self.settings.data_url or '').rstrip('/')}{base}/data"  # the data server, if one is set
        data = None if ds is None else DataInfo(
            version=ds.version, base_version=ds.stable_version, train_url=f"{data_base}/train",
            test_url=f"{data_base}/test" if ds.test else None,
            shape=list(ds.shape), num_classes=len(ds.labels), train_count=len(ds.train),
            test_count=len(ds.test) if ds.test else 0, labels=list(ds.labels))
        return Welcome(client_id=client.id, role=client.role, project_id=self.id, name=self.spec.name,
                       param_count=self.param_count, period_s=self.spec.hyper.period_s,
                       batch_size=self.spec.hyper.batch_size, model_url=f"{base}/model/model.json", data=data)

    def attach_data(self, dataset: Dataset) -> None:
        """New data for this project (an upload): allocate it afresh in balanced shares and tell
        every worker where to fetch it (a new WELCOME, then ALLOC for trainers)."""
        self.dataset = dataset
        trainers = [c.id for c in self.trainers()]
        self.allocator = Allocator(len(dataset.train), self.capacity_for(dataset))
        for tid in trainers:
            self.allocator.join(tid)
        self._welcome_again()

    # ---- examples labelled on the fly (MLitB §3.6) ------------------------------------------
    def latest_model_and_data(self) -> tuple[list[dict], Dataset | None]:
        """The network layers and data the project will have from the next round (a pending change
        included): what the next added example builds on, and what is stored."""
        if self._pending_change is not None:
            return self._pending_change
        return self.spec.network, self.dataset

    def stored_spec(self) -> ProjectSpec:
        """The spec to persist: the current one with the pending network, if any."""
        return self.spec.model_copy(update={"network": self.latest_model_and_data()[0]})

    def change_model_and_data(self, layers: list[dict], dataset: Dataset) -> int:
        """Take `dataset` (the current data with examples appended) and `layers` (the network, with more
        output units for new classes) from the next round; at once if no round is open. Returns that round."""
        self._pending_change = (layers, dataset)
        if self.open_round is None:
            self._apply_change()
            return self.round
        return self.round + 1

    async def settled(self) -> None:
        """Returns once no change is pending (at the latest when the open round closes)."""
        while self._pending_change is not None and not self._stopped:
            await asyncio.sleep(0.05)

    def _apply_change(self) -> None:
        """Between rounds: grow the output layer (kernel columns, biases and AdaGrad history, zero-filled),
        append the new examples to the allocation, and WELCOME every worker again (a new parameter count
        makes it reload the model; the data's base version lets it keep the examples it holds)."""
        layers, dataset = self._pending_change
        self._pending_change = None
        spec = self.spec.model_copy(update={"network": layers})
        network = spec.build_network()
        if network.param_count != self.param_count:
            self.params, self.history = grow_arrays(self.network, network, self.params, self.history)
            self.network = network
            self.record = ClosureRecord(self.round, self.params, self.history)  # a replay starts from the grown model
        self.spec = spec
        added = len(dataset.train) - len(self.dataset.train)
        self.dataset = dataset
        self.allocator.extend(added)
        self._welcome_again()

    def _welcome_again(self) -> None:
        for client in list(self.clients.values()):
            self._send(client, encode(MessageType.WELCOME, project=self.id,
                                      payload=self.welcome(client).model_dump()))
        self._send_allocations()

    def note_rejected(self) -> None:
        """Count a frame refused by validation in this round's metrics."""
        self.rejected_total += 1
        if self._stats is not None:
            self._stats.rejected += 1

    def _check_all_answered(self) -> None:
        if self.open_round is not None and not self._pending:
            self._all_answered.set()

    # ---- the round loop ------------------------------------------------------------------
    def work_ms_for(self, client: Client, queue_ms: float = 0.0) -> int:
        """Compute time for the next round so the result is back before the deadline: T minus the client's
        latency, minus one mini-batch at its measured rate (its clock-bounded loop may finish one batch past
        the work time), minus a margin, minus `queue_ms` (the ingest time of the gradients due after its
        own); within [min_work_ms, T]."""
        period_ms = self.spec.hyper.period_s * 1000
        margin = max(50.0, 0.05 * period_ms)
        batch_ms = 1000.0 * self.spec.hyper.batch_size / client.rate_sps if client.rate_sps else 0.0
        work = period_ms - client.latency_ms - min(batch_ms, period_ms) - margin - queue_ms
        return int(min(period_ms, max(self.settings.min_work_ms, work)))

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()
        self._all_answered.set()

    async def run(self) -> None:
        while not self._stopped:
            if not any(c.role == "trainer" for c in self.clients.values()):
                self._wake.clear()
                await self._wake.wait()
                continue
            await self.run_round()
            if self.on_checkpoint and self.round % self.settings.checkpoint_every == 0:
                await self.on_checkpoint(self)

    def restore(self, round: int, params: np.ndarray, history: np.ndarray, metrics: list[dict]) -> None:
        """Resume from a checkpoint: the next round is `round`."""
        if params.shape != self.params.shape or history.shape != self.params.shape:
            raise ValueError(f"checkpoint has {params.size} parameters; the network has {self.params.size}")
        self.round, self.params, self.history = round, params.astype(np.float32), history.astype(np.float32)
        self.metrics = [m for m in metrics if m["round"] < round]
        self.checkpointed_round = round - 1
        self.record = ClosureRecord(self.round, self.params, self.history)
        last = next((m for m in reversed(self.metrics) if m.get("test_error") is not None), None)
        self.latest_eval = (last["test_error_round"], last["test_error"]) if last else None

    async def run_round(self) -> dict:
        """One synchronised round; returns its metrics record."""
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
        stats = RoundStats(self.round, self.clock())
        stats.refreshed = refreshed
        if self._marks is None:
            self._marks = (time.process_time(), self.bytes_in, self.bytes_out)
        self._round_starts[self.round] = stats.started
        self._round_starts.pop(self.round - ROUNDS_REMEMBERED, None)  # late answers older than that are just refused
        self._stats, self._acc = stats, make_aggregator(self.spec.hyper, self.param_count)
        self._all_answered.clear()
        self.open_round = self.round
        self._pending = {c.id for c in self.trainers()}
        self._ingest_mark = None
        shared = self.params_frame()
        self.record.broadcast(self.round, self.params)
        # the k-th of n trainers (in the order the parameters go out) is due (n - 1 - k) ingest times before the
        # last, so the server takes the gradients in turn rather than all at the deadline
        n = len(self._pending)
        fleet_sps = median_rate([c.measured_sps for c in self.trainers() if c.measured_sps is not None])
        ingest_ms = 1000 * min(self.ingest_s, MAX_INGEST_SHARE * self.spec.hyper.period_s / max(n, 1))
        k = 0
        for c in list(self.clients.values()):
            if c.role == "trainer":
                c.work_ms = self.work_ms_for(c, (n - 1 - k) * ingest_ms if c.id in self._pending else 0.0)
                c.max_samples = self._max_samples(c)
                c.allowed_samples = self._allowed_samples(c, fleet_sps)
                k += c.id in self._pending
                self._send(c, shared)
                self._send(c, encode(MessageType.WORK, project=self.id, round=self.round, aux=c.work_ms,
                                     payload=self._chosen_ids(c)))
            elif c.role == "tracker":
                self._send(c, shared)
        stats.trainers = len(self.trainers())
        self._check_all_answered()
        try:
            await asyncio.wait_for(self._all_answered.wait(), timeout=self.spec.hyper.period_s)
        except asyncio.TimeoutError:
            pass
        self.open_round = None
        return self._close_round(stats)

    def _close_round(self, stats: RoundStats) -> dict:
        acc, h = self._acc, self.spec.hyper
        step_skipped = False
        if acc.samples > 0:
            # the step runs on copies: one whose result is not finite (finite but huge gradients
            # overflowing float32, say) is skipped and counted, never written into the model
            params, history = self.params.copy(), self.history.copy()
            adagrad_step(params, history, acc.mean(), learning_rate=h.learning_rate,
                         epsilon=h.epsilon, l1=h.l1, l2=h.l2)
            if np.isfinite(params).all() and np.isfinite(history).all():
                self.params, self.history = params, history
            else:
                step_skipped = True
                log.warning("project %s round %s: step skipped, it would make the model non-finite", self.id, stats.round)
        duration = self.clock() - stats.started
        lat = stats.latencies
        if len(stats.ingest) >= 2:  # CPU between the first and the last gradient, per gradient
            sample = float(np.mean(stats.ingest))
            rising = sample > self.ingest_s
            self.ingest_s = sample if rising else self.ingest_s + INGEST_SMOOTHING * (sample - self.ingest_s)
        cpu, bytes_in, bytes_out = self._marks or (time.process_time(), self.bytes_in, self.bytes_out)
        self._marks = (time.process_time(), self.bytes_in, self.bytes_out)
        self.samples_total += acc.samples
        record = {
            "round": stats.round,
            "time": time.time(),
            "duration_s": round(duration, 4),
            "trainers": stats.trainers,
            "contributions": acc.contributions,
            "samples": acc.samples,
            "samples_per_s": round(acc.samples / duration, 2) if duration > 0 else 0.0,
            "latency_ms_mean": round(float(np.mean(lat)), 2) if lat else None,
            "latency_ms_max": round(float(np.max(lat)), 2) if lat else None,
            "latency_ms_p95": round(float(np.percentile(lat, 95)), 2) if lat else None,
            "loss": round(acc.loss_sum / acc.samples, 6) if acc.samples else None,
            "learning_rate": h.learning_rate,  # live hyper-parameters (PATCH .../hyper) in force this round
            "period_s": h.period_s,
            "test_error": self.latest_eval[1] if self.latest_eval else None,
            "test_error_round": self.latest_eval[0] if self.latest_eval else None,
            "late": stats.late,
            "late_applied": stats.late_applied,
            "rejected": stats.rejected,
            "clamped": stats.clamped,
            "step_skipped": step_skipped,
            "cpu_s": round(self._marks[0] - cpu, 4),  # server process CPU time since the previous round closed
            "ingest_ms": round(self.ingest_s * 1000, 4),  # estimated server CPU time per gradient
            "bytes_in": self.bytes_in - bytes_in,  # WebSocket message bytes from / to this project's clients
            "bytes_out": self.bytes_out - bytes_out,
            # ids no trainer holds although some trainer has room (0 is the steady state)
            "unallocated": self.allocator.unallocated_with_room(),
            "refreshed": stats.refreshed,
            "classes": self.network.num_classes,
        }
        self.metrics.append(record)
        self.record.close_round(stats.round, step_skipped, h.deterministic)
        self.round += 1
        return record

    def _chosen_ids(self, client: Client) -> np.ndarray | bytes:
        """Deterministic mode: the examples the trainer must use this round (sent in WORK; docs/closure.md)."""
        hyper = self.spec.hyper
        held = self.allocator.ids_of(client.id) if hyper.deterministic else ()
        if len(held) == 0:
            return b""
        return self.record.name_examples(self.spec.seed, self.round, client.id, held, hyper.samples_per_round)
