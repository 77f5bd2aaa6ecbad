"""What a research closure needs from the round loop (docs/closure.md).

The state the recorded rounds start from; in deterministic mode, the examples the master names
each trainer every round (a seeded draw from its allocation, sent in WORK) and, per closed round,
who used which examples in the order they were reduced; the parameters broadcast in recent
rounds; and the newest test error with the parameters it was measured on. Arrays are kept by
reference: the loop replaces its parameter arrays at every step, never changes them in place.
"""

from __future__ import annotations

import time

import numpy as np

from mlitb.errors import ErrorCode, MlitbError

# A tracker's report counts for closures only while the parameters it measured are kept. The parameters of the
# ROUNDS_REMEMBERED newest rounds always are, and of every round sent out in the last SECONDS_REMEMBERED while
# they hold at most BYTES_REMEMBERED: a tracker that takes seconds over the whole test set (a phone, a loaded
# machine) reports many short rounds later, and with 8 rounds alone at T = 1 s its every report came too late.
ROUNDS_REMEMBERED = 8
SECONDS_REMEMBERED = 60.0
BYTES_REMEMBERED = 16 << 20


class ClosureRecord:
    def __init__(self, round: int, params: np.ndarray, history: np.ndarray, clock=time.monotonic):
        self.clock = clock
        self.replay_start = (round, params, history)
        self.replay_rounds: list[dict] = []  # deterministic mode: per closed round, who used which examples
        self.evaluated: tuple[int, float, int, np.ndarray] | None = None  # (round, error, count, its parameters)
        self._assigned: dict[int, np.ndarray] = {}  # deterministic mode: client id -> example ids of this round
        self._contributions: list[dict] = []
        self._params_of_round: dict[int, tuple[float, np.ndarray]] = {}  # round -> (sent at, params), oldest first

    def broadcast(self, round: int, params: np.ndarray) -> None:
        """The parameters sent out in `round`; the oldest are forgotten past the limits above."""
        now = self.clock()
        kept = self._params_of_round
        kept.pop(round, None)
        kept[round] = (now, params)
        while len(kept) > ROUNDS_REMEMBERED:
            oldest = next(iter(kept))
            sent_at = kept[oldest][0]
            if now - sent_at <= SECONDS_REMEMBERED and sum(p.nbytes for _, p in kept.values()) <= BYTES_REMEMBERED:
                break
            del kept[oldest]

    def params_of(self, round: int) -> np.ndarray | None:
        """The parameters sent out in `round`, while they are kept (see ROUNDS_REMEMBERED); else None."""
        entry = self._params_of_round.get(round)
        return None if entry is None else entry[1]

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
