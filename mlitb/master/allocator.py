"""Data allocation (MLitB §3.3 a, b): disjoint, balanced shares of data ids per trainer.

A new trainer gets unallocated ids first; if there are not enough, a "pie-cutter" takes
slices from the trainers holding the most, so no id moves needlessly. A trainer that
leaves gives its ids back; they go to the others with room, or stay unallocated.
"""

from __future__ import annotations

import numpy as np

UNALLOCATED = -1


class Allocator:
    def __init__(self, size: int, capacity: int):
        if size < 0 or capacity < 1:
            raise ValueError("size must be >= 0 and capacity >= 1")
        self.capacity = capacity
        self.owner = np.full(size, UNALLOCATED, dtype=np.int64)
        self.trainers: list[int] = []
        self.changed: set[int] = set()  # trainers whose allocation changed since last `take_changed`

    @property
    def size(self) -> int:
        return len(self.owner)

    def ids_of(self, trainer: int) -> np.ndarray:
        return np.flatnonzero(self.owner == trainer).astype(np.uint32)

    def counts(self) -> dict[int, int]:
        return {t: int(np.count_nonzero(self.owner == t)) for t in self.trainers}

    def _target(self) -> int:
        return min(self.capacity, self.size // max(1, len(self.trainers)))

    def _give_unallocated(self, trainer: int, want: int) -> int:
        if want <= 0:
            return 0
        free = np.flatnonzero(self.owner == UNALLOCATED)[:want]
        self.owner[free] = trainer
        if len(free):
            self.changed.add(trainer)
        return len(free)

    def join(self, trainer: int) -> None:
        if trainer in self.trainers:
            raise ValueError(f"trainer {trainer} already holds an allocation")
        self.trainers.append(trainer)
        target = self._target()
        got = self._give_unallocated(trainer, target)
        self.changed.add(trainer)
        counts = self.counts()
        counts.pop(trainer)
        # pie-cutter: level the largest shares down, a slice at a time, until the newcomer
        # holds its target or every share is within one of balanced
        while got < target and counts:
            donor = max(counts, key=counts.get)
            if counts[donor] <= got + 1:
                break
            next_largest = max((c for t, c in counts.items() if t != donor), default=0)
            n = min(target - got, max(1, counts[donor] - max(next_largest, target)))
            take = self.ids_of(donor)[-n:]
            self.owner[take] = trainer
            counts[donor] -= n
            got += n
            self.changed.add(donor)
        self.rebalance()

    def leave(self, trainer: int) -> None:
        if trainer not in self.trainers:
            return
        self.trainers.remove(trainer)
        self.changed.discard(trainer)
        self.owner[self.owner == trainer] = UNALLOCATED
        self.rebalance()

    def rebalance(self) -> None:
        """Hand unallocated ids to the trainers below target, smallest first."""
        if not self.trainers:
            return
        target = self._target()
        counts = self.counts()
        for t in sorted(self.trainers, key=lambda t: counts[t]):
            self._give_unallocated(t, target - counts[t])
        # ids left over by integer division go one each to trainers below capacity
        counts = self.counts()
        for t in sorted(self.trainers, key=lambda t: counts[t]):
            if counts[t] < self.capacity:
                self._give_unallocated(t, 1)

    def unallocated_with_room(self) -> int:
        """How many ids are unallocated although trainers still have capacity for them."""
        room = self.capacity * len(self.trainers) - int(np.count_nonzero(self.owner != UNALLOCATED))
        return min(room, int(np.count_nonzero(self.owner == UNALLOCATED)))

    def take_changed(self) -> set[int]:
        changed, self.changed = self.changed, set()
        return changed
