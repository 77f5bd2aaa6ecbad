"""Data allocation (MLitB §3.3 a, b): disjoint, balanced shares of data ids per trainer.

A new trainer gets unallocated ids first; if there are not enough, a "pie-cutter" takes
slices from the trainers holding the most, so no id moves needlessly. A trainer that
leaves gives its ids back; they go to the others with room, or stay unallocated.
Behind a gateway of a cluster, only the ids of that gateway's share are allocated (`restrict`,
mlitb/cluster/shares.py); the others are OUTSIDE, never given to its trainers.
"""

from __future__ import annotations

import numpy as np

UNALLOCATED = -1
OUTSIDE = -2  # another gateway's share of the data: not this allocator's to give
WAITING = -3  # appended while this gateway's share is not the whole data: the project places it in a share


class Allocator:
    def __init__(self, size: int, capacity: int):
        if size < 0 or capacity < 1:
            raise ValueError("size must be >= 0 and capacity >= 1")
        self.capacity = capacity
        self.owner = np.full(size, UNALLOCATED, dtype=np.int64)
        self.trainers: list[int] = []
        self.changed: set[int] = set()  # trainers whose allocation changed since last `take_changed`
        self.whole = True  # every id is this allocator's to give (one process; a gateway whose share is all the data)
        self._refresh_cursor = 0  # where the next refreshment starts in the unallocated pool
        # per trainer, the ids it has held (so has cached), as packed bits: 1 bit per id
        self._cached: dict[int, np.ndarray] = {}

    @property
    def size(self) -> int:
        return len(self.owner)

    def _remember(self, trainer: int, ids: np.ndarray) -> None:
        bits = np.unpackbits(self._cached.get(trainer, np.zeros((self.size + 7) // 8, np.uint8)), count=self.size)
        bits[ids] = 1
        self._cached[trainer] = np.packbits(bits)

    def cached_by(self, trainer: int) -> np.ndarray:
        """A boolean mask of the ids this trainer has held: it has them cached."""
        packed = self._cached.get(trainer)
        return np.zeros(self.size, bool) if packed is None else np.unpackbits(packed, count=self.size).astype(bool)

    def ids_of(self, trainer: int) -> np.ndarray:
        return np.flatnonzero(self.owner == trainer).astype(np.uint32)

    def counts(self) -> dict[int, int]:
        held = self.owner[self.owner >= 0]
        per = np.bincount(held, minlength=max(self.trainers, default=-1) + 1) if len(held) else None
        return {t: int(per[t]) if per is not None else 0 for t in self.trainers}

    def _target(self) -> int:
        universe = int(np.count_nonzero(self.owner >= UNALLOCATED))
        return min(self.capacity, universe // max(1, len(self.trainers)))

    def _give_unallocated(self, trainer: int, want: int) -> int:
        if want <= 0:
            return 0
        free = np.flatnonzero(self.owner == UNALLOCATED)[:want]
        self.owner[free] = trainer
        if len(free):
            self.changed.add(trainer)
            self._remember(trainer, free)
        return len(free)

    def join(self, trainer: int) -> None:
        if trainer in self.trainers:
            raise ValueError(f"trainer {trainer} already holds an allocation")
        self.trainers.append(trainer)
        target = self._target()
        got = self._give_unallocated(trainer, target)
        self.changed.add(trainer)
        need = target - got
        counts = self.counts()
        counts.pop(trainer)
        if need > 0 and counts:
            # pie-cutter: lower the largest shares to a common level L (never below the
            # newcomer's target), so each donor gives only what is above that level
            donors = sorted(counts, key=lambda t: -counts[t])
            c = np.array([counts[t] for t in donors])
            surplus = lambda level: int(np.maximum(c - level, 0).sum())  # noqa: E731
            lo, hi = target, int(c.max())
            while lo < hi:  # the highest level whose surplus still covers the need
                mid = (lo + hi + 1) // 2
                lo, hi = (mid, hi) if surplus(mid) >= need else (lo, mid - 1)
            give = np.maximum(c - (lo + 1), 0)
            extra = min(need, surplus(lo)) - int(give.sum())
            give[np.flatnonzero(c >= lo + 1)[:extra]] += 1  # the rest: one each, largest first
            for donor, n in zip(donors, give.tolist()):
                if n:
                    moved = self.ids_of(donor)[-n:]
                    self.owner[moved] = trainer
                    self._remember(trainer, moved)
                    self.changed.add(donor)
        self.rebalance()

    def leave(self, trainer: int) -> None:
        if trainer not in self.trainers:
            return
        self.trainers.remove(trainer)
        self.changed.discard(trainer)
        self._cached.pop(trainer, None)
        self.owner[self.owner == trainer] = UNALLOCATED
        self.rebalance()

    def rebalance(self) -> None:
        """Hand unallocated ids to the trainers below target, smallest first, then the ids
        left over by integer division one each to trainers below capacity."""
        if not self.trainers:
            return
        free = np.flatnonzero(self.owner == UNALLOCATED)
        if not len(free):
            return
        target, counts = self._target(), self.counts()
        for t in sorted(self.trainers, key=counts.get):
            want = target - counts[t]
            if want <= 0:
                continue
            # ids this trainer has cached first: it need not download them again
            free = np.flatnonzero(self.owner == UNALLOCATED)
            cached = self.cached_by(t)[free]
            take = np.concatenate([free[cached], free[~cached]])[:want]
            if len(take):
                self.owner[take] = t
                counts[t] += len(take)
                self._remember(t, take)
                self.changed.add(t)
        free = np.flatnonzero(self.owner == UNALLOCATED)
        pos = 0
        for t in sorted(self.trainers, key=counts.get):
            if pos >= len(free):
                break
            if counts[t] < self.capacity:
                self.owner[free[pos]] = t
                self._remember(t, free[pos:pos + 1])
                pos += 1
                self.changed.add(t)

    def refresh(self, fraction: float) -> int:
        """Data refreshment (the paper's suggestion, §3.3): each trainer swaps a `fraction` of its
        ids for unallocated ones. The pool is walked in id order from where the last refreshment
        stopped, so over time every example is allocated. Returns how many ids moved."""
        free = np.flatnonzero(self.owner == UNALLOCATED)
        if not len(free) or not self.trainers:
            return 0
        free = np.roll(free, -int(np.searchsorted(free, self._refresh_cursor)))
        pos = 0
        for t in self.trainers:
            mine = self.ids_of(t)
            k = min(max(1, int(len(mine) * fraction)), len(free) - pos, len(mine))
            if k <= 0:
                continue
            self.owner[mine[:k]] = UNALLOCATED
            self.owner[free[pos:pos + k]] = t
            self._remember(t, free[pos:pos + k])
            pos += k
            self.changed.add(t)
        if pos:
            self._refresh_cursor = int(free[pos - 1]) + 1
        return pos

    def extend(self, count: int) -> np.ndarray:
        """`count` new ids at the end (examples appended to the data). Each goes to a trainer at once,
        the least loaded first; one at capacity gives back one of its old ids for it, so a new example
        is trained on from the next round even when the data exceeds what the trainers hold. Behind a gateway
        whose share is not the whole data, they wait for the project to place them in a share (`restrict`)."""
        if count < 0:
            raise ValueError("count must be >= 0")
        new = np.arange(self.size, self.size + count)
        self.owner = np.concatenate([self.owner, np.full(count, UNALLOCATED if self.whole else WAITING, np.int64)])
        if self.whole:
            self._place_new(new)
        return new

    def _place_new(self, new: np.ndarray) -> None:
        self.owner[new] = UNALLOCATED
        if not self.trainers:
            return
        counts, given = self.counts(), dict.fromkeys(self.trainers, 0)
        for i in new.tolist():
            t = min(self.trainers, key=lambda t: (counts[t], given[t]))
            given[t] += 1
            if counts[t] >= self.capacity:
                self.owner[self.ids_of(t)[0]] = UNALLOCATED
            else:
                counts[t] += 1
            self.owner[i] = t
            self._remember(t, np.array([i]))
            self.changed.add(t)

    def unallocated_with_room(self) -> int:
        """How many ids are unallocated although trainers still have capacity for them."""
        room = self.capacity * len(self.trainers) - int(np.count_nonzero(self.owner >= 0))
        return min(room, int(np.count_nonzero(self.owner == UNALLOCATED)))

    def restrict(self, share: np.ndarray, known: int) -> bool:
        """Allocate only the ids of `share` among ids [0, known) from now on (ids from `known` on are examples the
        project has not placed yet: left as they are). Ids leaving the share are taken from their trainers; ids
        entering it go to trainers with room, each preferring ids it has cached; examples appended meanwhile go
        to a trainer at once (as `extend`); every other trainer keeps what it holds. Returns whether anything
        changed."""
        known = min(max(0, known), self.size)
        inside = np.zeros(known, bool)
        ids = np.asarray(share, np.int64)
        inside[ids[(ids >= 0) & (ids < known)]] = True
        self.whole = bool(inside.all())
        head = self.owner[:known]
        leaving, entering = ~inside & (head != OUTSIDE), inside & (head == OUTSIDE)
        appended = np.flatnonzero(inside & (head == WAITING))
        if not leaving.any() and not entering.any() and not len(appended):
            return False
        self.changed.update(int(t) for t in np.unique(head[leaving & (head >= 0)]))
        head[leaving] = OUTSIDE
        head[entering] = UNALLOCATED
        self.rebalance()
        self._place_new(appended)
        return True

    def take_changed(self) -> set[int]:
        changed, self.changed = self.changed, set()
        return changed
