"""The round loop over the in-memory transport: the same loop the WebSocket server runs."""

import asyncio

import numpy as np

from mlitb.codec import committed
from mlitb.errors import ErrorCode
from mlitb.master.allocator import UNALLOCATED
from mlitb.protocol import MessageType, encode
from mlitb.workers.simulated import MemoryTrainer
from tests.helpers import make_runtime

TARGET = np.linspace(-1, 1, 15).astype(np.float32)


def quadratic(params, ids):
    """Gradient of 0.5*|w - target|^2 summed over the client's samples."""
    n = max(1, len(ids))
    return (params - TARGET) * n, n, float(0.5 * np.sum((params - TARGET) ** 2) * n)


async def run_rounds(runtime, n):
    return [await runtime.run_round() for _ in range(n)]


async def test_rounds_with_in_memory_trainers_reduce_the_loss():
    rt = make_runtime(learning_rate=0.1)
    trainers = [MemoryTrainer(rt, quadratic) for _ in range(3)]
    await asyncio.sleep(0)
    records = await run_rounds(rt, 30)
    assert all(r["contributions"] == 3 for r in records)
    assert records[-1]["loss"] < 0.2 * records[0]["loss"]
    assert [r["round"] for r in records] == list(range(30))
    assert all(t.rounds_answered == list(range(30)) for t in trainers)


async def test_each_trainer_gets_a_disjoint_balanced_share_of_the_data():
    rt = make_runtime(n=30)
    trainers = [MemoryTrainer(rt, quadratic) for _ in range(3)]
    await run_rounds(rt, 1)
    shares = [set(t.ids.tolist()) for t in trainers]
    assert [len(s) for s in shares] == [10, 10, 10]
    assert set().union(*shares) == set(range(30))


async def test_a_round_closes_early_when_every_trainer_has_answered():
    rt = make_runtime(period_s=30)
    MemoryTrainer(rt, quadratic)
    # three rounds at their deadlines would take 90 s; the generous bound only catches a round that waits for it
    records = await asyncio.wait_for(run_rounds(rt, 3), timeout=30)
    assert [r["contributions"] for r in records] == [1, 1, 1]


async def test_a_trainer_that_never_answers_does_not_hold_the_round_past_its_deadline():
    rt = make_runtime(period_s=1)
    MemoryTrainer(rt, quadratic)
    MemoryTrainer(rt, None)  # joins, never answers
    records = await asyncio.wait_for(run_rounds(rt, 2), timeout=30)  # generous: a loaded machine is slow
    assert all(r["duration_s"] >= 0.95 for r in records)  # each round waited for its deadline, then closed
    assert [r["contributions"] for r in records] == [1, 1]


async def test_a_disconnected_trainers_ids_go_back_to_the_others_at_once():
    rt = make_runtime(n=30)
    a, b = MemoryTrainer(rt, quadratic), MemoryTrainer(rt, quadratic)
    await run_rounds(rt, 1)
    b.leave()
    await asyncio.sleep(0)
    assert np.count_nonzero(rt.allocator.owner == UNALLOCATED) == 0
    assert len(a.ids) == 30
    records = await run_rounds(rt, 1)
    assert records[0]["trainers"] == 1


async def test_one_trainer_with_learning_rate_and_no_decay_moves_by_adagrad_exactly():
    rt = make_runtime(learning_rate=0.5, epsilon=1e-8)
    before = rt.params.copy()
    MemoryTrainer(rt, quadratic)
    await run_rounds(rt, 1)
    np.testing.assert_allclose(rt.params, before - 0.5 * np.sign(before - TARGET), atol=1e-6)


async def test_bad_gradients_are_refused_and_the_round_carries_on():
    rt = make_runtime()
    good = MemoryTrainer(rt, quadratic)
    bad = MemoryTrainer(rt, None)
    await asyncio.sleep(0)
    round_task = asyncio.create_task(rt.run_round())
    await asyncio.sleep(0.05)
    P = rt.param_count
    cases = {
        ErrorCode.WRONG_LENGTH: encode(MessageType.GRADIENT, project=1, round=0, count=1, payload=np.zeros(P - 1, np.float32)),
        ErrorCode.NON_FINITE: encode(MessageType.GRADIENT, project=1, round=0, count=1, payload=np.full(P, np.nan, np.float32)),
        ErrorCode.STALE_ROUND: encode(MessageType.GRADIENT, project=1, round=5, count=1, payload=np.zeros(P, np.float32)),
        ErrorCode.BAD_SAMPLE_COUNT: encode(MessageType.GRADIENT, project=1, round=0, count=0, payload=np.zeros(P, np.float32)),
        ErrorCode.WRONG_PROJECT: encode(MessageType.GRADIENT, project=2, round=0, count=1, payload=np.zeros(P, np.float32)),
        ErrorCode.WRONG_ROLE: encode(MessageType.EVAL, project=1, round=0, count=1, value=0.5),
    }
    # one float past the largest payload this project takes (a committed gradient: the sum and the biggest trailer)
    largest = 4 * P + committed.trailer_bytes(committed.MAX_BATCHES)
    cases[ErrorCode.FRAME_TOO_LARGE] = encode(MessageType.GRADIENT, project=1, round=0, count=1,
                                              payload=np.zeros(largest // 4 + 1, np.float32))  # last: it closes
    for code, frame in cases.items():
        err = bad.send(frame)
        assert err is not None and err.code == code, (code, err)
    assert bad.session.closed and bad.client.id not in rt.clients
    record = await round_task
    assert record["contributions"] == 1 and record["rejected"] == len(cases)
    assert good.rounds_answered == [0]


async def test_a_second_gradient_for_the_same_round_is_refused():
    rt = make_runtime()
    t = MemoryTrainer(rt, None)
    MemoryTrainer(rt, None)  # keeps the round open
    await asyncio.sleep(0)
    round_task = asyncio.create_task(rt.run_round())
    await asyncio.sleep(0.05)
    frame = encode(MessageType.GRADIENT, project=1, round=0, count=2, value=1.0, payload=np.ones(rt.param_count, np.float32))
    assert t.send(frame) is None
    assert t.send(frame).code == ErrorCode.DUPLICATE_RESULT
    assert (await round_task)["samples"] == 2


async def test_tracker_evaluations_are_recorded_in_the_metrics():
    rt = make_runtime()
    MemoryTrainer(rt, quadratic)
    tracker = MemoryTrainer(rt, None, role="tracker")
    await run_rounds(rt, 2)
    assert tracker.send(encode(MessageType.EVAL, project=1, round=1, count=6, value=0.25)) is None
    assert tracker.send(encode(MessageType.EVAL, project=1, round=1, count=6, value=1.5)).code == ErrorCode.BAD_VALUE
    record = (await run_rounds(rt, 1))[0]
    assert record["test_error"] == 0.25 and record["test_error_round"] == 1


async def test_work_time_stays_within_zero_and_the_period():
    rt = make_runtime(period_s=2)
    t = MemoryTrainer(rt, quadratic)
    for latency in (0, 500, 1900, 50_000):
        t.client.latency_ms = latency
        w = rt.work_ms_for(t.client)
        assert rt.settings.min_work_ms <= w <= 2000
    t.client.latency_ms = 0
    fast = rt.work_ms_for(t.client)
    t.client.latency_ms = 800
    assert rt.work_ms_for(t.client) < fast


async def test_a_late_gradient_is_refused_counted_and_shrinks_the_next_work_time():
    rt = make_runtime(period_s=1)
    slow = MemoryTrainer(rt, None)
    await asyncio.sleep(0)
    first = await rt.run_round()  # nobody answers round 0
    work_before = rt.work_ms_for(slow.client)
    round_task = asyncio.create_task(rt.run_round())
    await asyncio.sleep(0.05)
    late = encode(MessageType.GRADIENT, project=1, round=0, count=1, aux=100, payload=np.zeros(rt.param_count, np.float32))
    assert slow.send(late).code == ErrorCode.STALE_ROUND
    record = await round_task
    assert first["contributions"] == 0 and record["late"] == 1
    assert rt.work_ms_for(slow.client) < work_before


async def test_data_beyond_every_trainers_capacity_is_refreshed_into_the_allocations():
    from mlitb.config import Settings
    from mlitb.master.loop import ProjectRuntime

    base = make_runtime(n=30)
    rt = ProjectRuntime(1, base.spec, base.network, base.dataset,
                        Settings(trainer_capacity=5, refresh_every=2, refresh_fraction=0.4))
    trainers = [MemoryTrainer(rt, quadratic) for _ in range(2)]
    seen = set()
    for _ in range(12):
        record = await rt.run_round()
        for t in trainers:
            assert len(t.ids) == 5
            seen |= set(t.ids.tolist())
    refreshed = [m["refreshed"] for m in rt.metrics]
    assert refreshed[2] == 4 and refreshed[1] == 0  # 40% of 5 for each trainer, every 2nd round
    assert seen == set(range(30)) and record["unallocated"] == 0


def test_a_trainers_share_is_capped_by_its_byte_budget():
    from mlitb.config import Settings
    from mlitb.master.loop import ProjectRuntime

    base = make_runtime(n=30)  # 2x2x1 images: 5 bytes an example with its label
    rt = ProjectRuntime(1, base.spec, base.network, base.dataset, Settings(trainer_capacity=100, trainer_bytes=52))
    assert rt.capacity_for(base.dataset) == 10 and rt.allocator.capacity == 10
