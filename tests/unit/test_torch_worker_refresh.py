"""A seeded (spot-checked) WORK is trained only on exactly the allocated examples: after a refresh swaps ids at
the same count, a torch worker that checked only the count trained on its old ids and was struck though honest."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np

from mlitb.protocol import MessageType, decode, encode
from mlitb.workers.native.client import NativeWorker, Options
from mlitb.workers.native.data import Held


def worker_holding(ids: list[int]) -> tuple[NativeWorker, list]:
    w = NativeWorker(Options("http://127.0.0.1:1", 1, "trainer", device="cpu"))
    computed = []
    w.engine = SimpleNamespace(param_count=3, held=len(ids))
    w.welcome = SimpleNamespace(batch_size=32)
    w.params = (0, np.zeros(3, np.float32))
    w.held = Held("v1", np.array(ids, np.uint32), np.zeros((len(ids), 1, 1, 1), np.uint8), np.zeros(len(ids), np.uint8))
    w._compute_committed = lambda *args: computed.append(args) or (_ for _ in ()).throw(StopIteration)
    return w, computed


def alloc(w: NativeWorker, ids: list[int]) -> None:
    w._allocated = np.sort(np.array(ids, np.uint32))  # what an ALLOC frame sets (its download is not started here)
    w.status.allocated = len(ids)


def seeded_work():
    return decode(encode(MessageType.WORK, project=1, round=0, count=12345, aux=500), 1 << 20)


async def test_a_seeded_work_during_a_same_size_refresh_is_skipped_not_trained_on_the_old_ids():
    w, computed = worker_holding([1, 2, 3])
    alloc(w, [1, 2, 4])  # a refresh swapped 3 for 4; 4 is still downloading
    await w._on_work(seeded_work(), time.perf_counter())
    assert computed == [] and w.status.state == "idle"


async def test_a_seeded_work_on_exactly_the_allocated_ids_is_trained():
    w, computed = worker_holding([3, 1, 2])
    alloc(w, [1, 2, 3])
    try:
        await w._on_work(seeded_work(), time.perf_counter())
    except (StopIteration, RuntimeError):
        pass  # the stand-in compute stops here, once it has been called
    assert len(computed) == 1
