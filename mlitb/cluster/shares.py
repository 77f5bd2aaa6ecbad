"""Data allocation across gateways: the project decides which training ids each live gateway's trainers may hold.

One process allocates every training id among its own trainers (mlitb/master/allocator.py). Through gateways the
project actor first cuts the ids into disjoint *shares*, one per live gateway with trainers, sized by what that
gateway's trainers can hold (the capacity it reports); each gateway's Allocator then allocates within its share
exactly as one process allocates within all ids. The shares together always hold every id (as long as some
gateway has trainers), so:

* data within the fleet's capacity (ids ≤ Σ capacity): each gateway's share is at most its capacity, so its
  trainers hold all of it; shares are filled to a common level (max-min fair), so a gateway claiming a huge
  capacity gets no more than that level and cannot keep the others below theirs;
* data beyond it: each share is proportional to capacity (at least the capacity), each gateway's trainers hold
  their capacity of it and swap the rest in by data refreshment, as one process does over all ids.

A change (a gateway joins, dies, or its capacity changes) keeps every share's ids it still has room for and
hands only the surplus to the gateways below their size, so trainers keep the examples they downloaded. One
gateway alone gets every id: it allocates exactly as one process.
"""

from __future__ import annotations

import secrets

import numpy as np

from mlitb.errors import ErrorCode, MlitbError

NOBODY = -1


def targets(capacities: dict[str, int], size: int) -> dict[str, int]:
    """How many of `size` ids each gateway's share holds, given what its trainers can hold (clamped to [0, size])."""
    caps = {g: min(max(0, int(c)), size) for g, c in capacities.items()}
    total = sum(caps.values())
    if total == 0:
        return dict.fromkeys(caps, 0)
    names = sorted(caps)
    if total <= size:  # beyond the capacity: proportional, the remainder by largest fraction (ties by name)
        out = {g: size * caps[g] // total for g in names}
        by_fraction = sorted((g for g in names if caps[g]), key=lambda g: (-(size * caps[g] % total), g))
        for g in by_fraction[:size - sum(out.values())]:
            out[g] += 1
        return out
    # within the capacity: the highest common level L with Σ min(c, L) ≤ size, then one more each (by name) to
    # gateways that have room above L until every id has a share
    lo, hi = 0, max(caps.values())
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if sum(min(c, mid) for c in caps.values()) <= size else (lo, mid - 1)
    out = {g: min(caps[g], lo) for g in names}
    for g in [g for g in names if caps[g] > lo][:size - sum(out.values())]:
        out[g] += 1
    return out


def partition(previous: dict[str, np.ndarray], capacities: dict[str, int], size: int) -> dict[str, np.ndarray]:
    """Disjoint shares of ids [0, size), one per gateway of `capacities`, sized by `targets`. Each gateway keeps
    the ids of its `previous` share up to its new size (its lowest ids); the surplus and ids nobody held go,
    lowest first, to the gateways below their size. Returns sorted uint32 arrays."""
    want = targets(capacities, size)
    names = sorted(want)
    owner = np.full(size, NOBODY, np.int64)
    for i, g in enumerate(names):
        ids = np.unique(np.asarray(previous.get(g, ()), np.int64))
        ids = ids[(ids >= 0) & (ids < size)]
        ids = ids[owner[ids] == NOBODY]
        owner[ids[:want[g]]] = i
    held = np.bincount(owner[owner != NOBODY], minlength=len(names))
    free = np.flatnonzero(owner == NOBODY)
    pos = 0
    for i, g in enumerate(names):
        need = want[g] - int(held[i])
        owner[free[pos:pos + need]] = i
        pos += need
    return {g: np.flatnonzero(owner == i).astype(np.uint32) for i, g in enumerate(names)}


def checked_capacity(capacity, bound: int) -> int:
    """A gateway's report of what its trainers can hold, as hostile input: a non-negative integer (BAD_VALUE
    otherwise), clamped to `bound` (what the project's trainer cap lets one gateway's trainers hold)."""
    if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)) or capacity < 0:
        raise MlitbError(ErrorCode.BAD_VALUE, "a gateway's capacity is a non-negative integer")
    return int(min(int(capacity), max(0, bound)))


class ShareBook:
    """The project's record of the shares: what each gateway reported, the partition in force, and the share each
    gateway was last handed (`delivered`, with a version so a gateway that has it is sent nothing).

    A share handed to a gateway leaves out the ids still in another live gateway's last handed share: an id moving
    from one gateway to another reaches the second only after the first took its smaller share (its next round),
    so no id is in two handed shares at once. A gateway that reports no capacity has no trainers and holds nothing."""

    def __init__(self):
        self.capacity: dict[str, int] = {}
        self.shares: dict[str, np.ndarray] = {}  # the partition in force
        self.delivered: dict[str, tuple[int, int, np.ndarray]] = {}  # gateway -> (version, size, ids)
        self._inputs: tuple | None = None
        self._data: tuple[str, int] | None = None  # (stable version, size) the partition is of
        # versions start at random: a restarted project actor never hands out a version a gateway already has
        self._serial = secrets.randbits(48)

    def report(self, gateway: str, capacity, bound: int) -> None:
        self.capacity[gateway] = checked_capacity(capacity, bound)

    def share_for(self, gateway: str, known, live: list[str], data_version: str, size: int):
        """(version, size, ids) of `gateway`'s share, or None when its share is still version `known`."""
        self._update(live, data_version, size)
        mine = self.shares.get(gateway, np.zeros(0, np.uint32))
        holders = [h for h in live if h != gateway and self.capacity.get(h, 0) > 0 and h in self.delivered]
        if holders and len(mine):
            elsewhere = np.zeros(size, bool)
            for h in holders:
                ids = self.delivered[h][2]
                elsewhere[ids[ids < size]] = True
            mine = mine[~elsewhere[mine]]
        last = self.delivered.get(gateway)
        if last is None or last[1] != size or not np.array_equal(last[2], mine):
            self._serial += 1
            last = self.delivered[gateway] = (self._serial, size, mine)
        has_it = isinstance(known, int) and not isinstance(known, bool) and known == last[0]  # sent by a gateway
        return None if has_it else last

    def _update(self, live: list[str], data_version: str, size: int) -> None:
        """Partition again when the live gateways, their capacities or the data changed. A new upload (another
        stable version, or fewer ids) starts over; appended examples are new ids for the gateways with room."""
        if self._data is not None and (self._data[0] != data_version or self._data[1] > size):
            self.shares, self.delivered, self._inputs = {}, {}, None
        self._data = (data_version, size)
        for gone in set(self.delivered) - set(live):  # no longer live: its trainers went with it
            del self.delivered[gone]
        caps = {g: self.capacity[g] for g in live if self.capacity.get(g, 0) > 0}
        inputs = (tuple(sorted(caps.items())), size)
        if inputs != self._inputs:
            self.shares, self._inputs = partition(self.shares, caps, size), inputs
