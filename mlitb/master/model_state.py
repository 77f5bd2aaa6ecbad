"""A project's model state and the only ways to change it: updates, weight upload, hyper changes, restore, growth.

The parameters, the server optimizer's state, the model version (round), the metrics records, the
newest test error and the closure record belong together: a research closure replays from the
record's start state through the recorded rounds, so every change that is not an update (loaded
weights, a restored checkpoint, a grown output layer) starts a new record from the new state, and
every change resets or lays out the optimizer state to match. Nothing outside writes these fields;
`ProjectRuntime` (loop.py) builds on this class. Arrays are replaced, never changed in place, so a
record or snapshot may keep them by reference.
"""

from __future__ import annotations

import numpy as np

from mlitb.data import Dataset
from mlitb.master.closure_record import ClosureRecord
from mlitb.master.project import Hyper, ProjectSpec
from mlitb.model import Network, glorot_init
from mlitb.model.grow import grow_arrays
from mlitb.training.optimizers import ServerOptimizer, make_optimizer


class ModelState:
    _dataset: Dataset | None  # set by the runtime (attach_data, model growth)

    def __init__(self, spec: ProjectSpec, network: Network, params: np.ndarray | None,
                 optimizer: ServerOptimizer | None):
        self._spec = spec
        self._network = network
        self._param_count: tuple[Network, int] | None = None
        self._params = glorot_init(network, spec.seed) if params is None else params.astype(np.float32)
        self.optimizer = optimizer or make_optimizer(spec.hyper, self._params.size)
        self._round = 0
        self._metrics: list[dict] = []
        self._checkpointed_round = -1
        self._latest_eval: tuple[int, float] | None = None
        self._owner_hash: str | None = None
        self._invite_hash: str | None = None
        self._record = self._new_record()
        # examples labelled on the fly (mlitb/server/examples.py): the network layers and data they make,
        # applied between updates (never mid-update: every result of an update has the same size)
        self._pending_change: tuple[list[dict], Dataset] | None = None

    # ---- views (read-only: the methods below are the only writers) ---------------------------------
    @property
    def spec(self) -> ProjectSpec:
        return self._spec

    @property
    def dataset(self) -> Dataset | None:
        return self._dataset

    @property
    def network(self) -> Network:
        return self._network

    @property
    def round(self) -> int:
        """The model version: updates applied (or skipped) since the project started; the round, in sync mode."""
        return self._round

    @property
    def metrics(self) -> list[dict]:
        """One record per update, oldest first."""
        return self._metrics

    @property
    def checkpointed_round(self) -> int:
        """Metrics up to this round are stored."""
        return self._checkpointed_round

    @property
    def latest_eval(self) -> tuple[int, float] | None:
        """(round evaluated, test error): the newest tracker evaluation of the current model."""
        return self._latest_eval

    @property
    def owner_hash(self) -> str | None:
        """SHA-256 of the owner token (`grant`)."""
        return self._owner_hash

    @property
    def invite_hash(self) -> str | None:
        """SHA-256 of the invite token of a private project."""
        return self._invite_hash

    @property
    def record(self) -> ClosureRecord:
        """What a research closure needs of the updates since the last change that was not an update."""
        return self._record

    @property
    def params(self) -> np.ndarray:
        """The current parameters (float32; replaced at every update, never written in place)."""
        return self._params

    @property
    def history(self) -> np.ndarray:
        """The server optimizer's state arrays, concatenated (AdaGrad: its squared-gradient history)."""
        return self.optimizer.state()

    @property
    def param_count(self) -> int:
        cached = self._param_count  # summing the weight shapes costs ~30 us: once per network, not per frame
        if cached is None or cached[0] is not self._network:
            cached = self._param_count = (self._network, self._network.param_count)
        return cached[1]

    def latest_model_and_data(self) -> tuple[list[dict], Dataset | None]:
        """The network layers and data the project will have from the next update (a pending change
        included): what the next added example builds on, and what is stored."""
        if self._pending_change is not None:
            return self._pending_change
        return self.spec.network, self.dataset

    def stored_spec(self) -> ProjectSpec:
        """The spec to persist: the current one with the pending network, if any."""
        return self.spec.model_copy(update={"network": self.latest_model_and_data()[0]})

    def checkpoint_view(self) -> tuple[int, np.ndarray, np.ndarray, list[dict]]:
        """What a checkpoint stores: (next round, parameters, optimizer state, metrics not stored yet); copies."""
        new = [m for m in self.metrics if m["round"] > self.checkpointed_round]
        return self.round, self._params.copy(), self.optimizer.state().copy(), new

    # ---- changes ------------------------------------------------------------------------------------
    def grant(self, owner_hash: str | None, invite_hash: str | None) -> None:
        """Who may manage (owner) and join (invite, private projects) this project: token hashes."""
        self._owner_hash, self._invite_hash = owner_hash, invite_hash

    def mark_checkpointed(self, round: int) -> None:
        """A checkpoint of `round` (as returned by `checkpoint_view`) is stored, with the metrics before it."""
        self._checkpointed_round = round - 1

    def apply_update(self, update: np.ndarray) -> bool:
        """One step of the server optimizer; False (nothing changed) if it would make the model non-finite."""
        new = self.optimizer.step(self._params, update, self.spec.hyper)
        if new is None:
            return False
        self._params = new
        return True

    def advance(self) -> None:
        """The update is closed (applied or skipped): the next one has the next version."""
        self._round += 1

    def change_hyper(self, hyper: Hyper) -> None:
        """Live hyper-parameters (PATCH .../hyper), read afresh by every update: the open update's step (when
        it closes) already uses them; its period was already running, so a new T times the updates after it."""
        self._spec = self.spec.model_copy(update={"hyper": hyper})

    def replace_params(self, params: np.ndarray) -> None:
        """Loaded weights: a fresh optimizer state, a new closure record starting from them (a replay must not
        start from the weights before), and no test error until a tracker measures the new weights."""
        params = np.asarray(params, dtype=np.float32)
        if params.shape != self._params.shape:
            raise ValueError(f"{params.size} parameters; the network has {self._params.size}")
        self._params = params.copy()
        self.optimizer.reset(params.size)
        self._latest_eval = None
        self._record = self._new_record()
        self._params_replaced()

    def restore(self, round: int, params: np.ndarray, history: np.ndarray, metrics: list[dict]) -> None:
        """Resume from a checkpoint: the next round is `round`; `history` is the optimizer state."""
        if params.shape != self._params.shape:
            raise ValueError(f"checkpoint has {params.size} parameters; the network has {self._params.size}")
        self.optimizer.load(history.astype(np.float32))
        self._round, self._params = round, params.astype(np.float32)
        self._metrics = [m for m in metrics if m["round"] < round]
        self._checkpointed_round = round - 1
        self._record = self._new_record()
        self._params_replaced()
        last = next((m for m in reversed(self.metrics) if m.get("test_error") is not None), None)
        self._latest_eval = (last["test_error_round"], last["test_error"]) if last else None

    def carry_evaluation(self, round: int, error: float, count: int, params: np.ndarray) -> None:
        """A test error measured before this state was restored, with the parameters it was measured on: a
        project continued from a closure carries its closure's report, so a closure saved from it at once can
        be verified too. Call after `restore` (which starts a new record)."""
        if self.latest_eval is None or round >= self.latest_eval[0]:
            self._latest_eval = (round, float(error))
        self.record.carry_evaluation(round, error, count, np.asarray(params, dtype=np.float32))

    def grow_to(self, layers: list[dict]) -> None:
        """A network with more output units (new classes): kernel columns, biases and every optimizer state
        array are laid out anew, zero-filled; a replay starts from the grown model."""
        spec = self.spec.model_copy(update={"network": layers})
        network = spec.build_network()
        if network.param_count != self.param_count:
            grown = grow_arrays(self.network, network, self._params, *self.optimizer.arrays())
            self._params = grown[0]
            self.optimizer.replace(grown[1:])
            self._network = network
            self._record = self._new_record()
            self._params_replaced()
        self._spec = spec

    def note_evaluation(self, round: int, error: float, count: int) -> None:
        """A tracker's test error of the parameters of `round`: the newest is reported with every update and
        kept (with its parameters) for closures; the metrics record of that round gets it too."""
        if self.latest_eval is None or round >= self.latest_eval[0]:
            self._latest_eval = (round, error)
            self.record.evaluation(round, error, count)
        for m in reversed(self.metrics):
            if m["round"] == round:
                m["test_error_of_round"] = error
                break

    def _params_replaced(self) -> None:
        """Hook: the parameters changed other than by an update (the runtime sends them dense next)."""

    def _new_record(self) -> ClosureRecord:
        return ClosureRecord(self._round, self._params, self.optimizer.state())
