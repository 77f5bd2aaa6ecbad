"""What a research closure needs from the round loop (docs/closure.md).

The state the recorded rounds start from; in deterministic mode, the examples the master names
each trainer every round (a seeded draw from its allocation, sent in WORK) and, per closed round,
who used which examples in the order they were reduced; the parameters broadcast in recent
rounds; and the newest test error with the parameters it was measured on. Arrays are kept by
reference: the loop replaces its parameter arrays at every step, never changes them in place.
"""

from __future__ import annotations

import numpy as np

from mlitb.errors import ErrorCode, MlitbError

ROUNDS_REMEMBERED = 8  # parameters of this many recent rounds are kept (a tracker evaluates a recent one)


class ClosureRecord:
    def __init__(self, round: int, params: np.ndarray, history: np.ndarray):
        self.replay_start = (round, params, history)
        self.replay_rounds: list[dict] = []  # deterministic mode: per closed round, who used which examples
        self.evaluated: tuple[int, float, int, np.ndarray] | None = None  # (round, error, count, its parameters)
        self._assigned: dict[int, np.ndarray] = {}  # deterministic mode: client id -> example ids of this round
        self._contributions: list[dict] = []
        self._params_of_round: dict[int, np.ndarray] = {}

    def broadcast(self, round: int, params: np.ndarray) -> None:
        """The parameters sent out in `round` (older rounds are forgotten)."""
        self._params_of_round[round] = params
        self._params_of_round.pop(round - ROUNDS_REMEMBERED, None)

    def params_of(self, round: int) -> np.ndarray | None:
        """The parameters sent out in `round`, while it is one of the ROUNDS_REMEMBERED newest (else None)."""
        return self._params_of_round.get(round)

    def name_examples(self, seed: int, round: int, client_id: int, held: np.ndarray, count: int) -> np.ndarray:
        """Deterministic mode: a seeded draw of `count` of the trainer's `held` examples for this round."""
        rng = np.random.default_rng([seed, round, client_id])
        ids = rng.choice(np.asarray(held, dtype=np.uint32), min(count, len(held)), replace=False)
        self._assigned[client_id] = ids
        return ids

    def contribution(self, client_id: int, samples: int, loss_sum: float) -> dict:
        """Deterministic mode: the record of a gradient over the examples the master named; a gradient over any
        other number of samples is refused (before it is reduced)."""
        ids = self._assigned.get(client_id)
        if ids is None or samples != len(ids):
            raise MlitbError(ErrorCode.BAD_SAMPLE_COUNT, f"deterministic round: {samples} samples; the master "
                             f"named {0 if ids is None else len(ids)}")
        return {"ids": ids, "samples": samples, "loss_sum": float(loss_sum)}

    def reduced(self, contribution: dict) -> None:
        """A contribution that was added to the round's reduce, in order."""
        self._contributions.append(contribution)

    def close_round(self, round: int, step_skipped: bool, deterministic: bool) -> None:
        if deterministic:
            self.replay_rounds.append({"round": round, "contributions": self._contributions, "step_skipped": step_skipped})
        self._contributions, self._assigned = [], {}

    def carry_evaluation(self, round: int, error: float, count: int, params: np.ndarray) -> None:
        """A test error reported before this record started, with the parameters it was measured on (a project
        continued from a closure carries its closure's report, so a closure saved from it can be verified)."""
        if self.evaluated is None or round >= self.evaluated[0]:
            self.evaluated = (round, float(error), int(count), params)

    def evaluation(self, round: int, error: float, count: int) -> None:
        """A tracker's test error of `round`, kept with the parameters it was measured on (if still known)."""
        params = self.params_of(round)
        if params is not None:
            self.evaluated = (round, float(error), int(count), params)
