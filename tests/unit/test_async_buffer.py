"""The buffered asynchronous strategy (FedBuff): staleness weights, an update every K results exactly, the
staleness-weighted undamped-by-renormalising step, and the refusal of results older than max_staleness."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from mlitb.config import Settings
from mlitb.errors import ErrorCode, MlitbError
from mlitb.master.loop import ProjectRuntime
from mlitb.master.project import Hyper, ProjectSpec
from mlitb.protocol import MessageType, decode, encode
from mlitb.training.strategies import AsyncBuffer, SyncRounds, staleness_weight
from mlitb.workers.simulated import MemoryTrainer
from tests.helpers import TINY_NETWORK, tiny_dataset
from tests.integration.test_strategies import PlainSgd


def test_staleness_weights_are_inverse_sqrt_constant_and_hinge():
    assert [staleness_weight("inverse_sqrt", s) for s in (0, 3, 8)] == [1.0, 0.5, 1 / 3]
    assert staleness_weight("constant", 50) == 1.0
    assert [staleness_weight("hinge", s, hinge_after=2) for s in (0, 2, 3, 6)] == [1.0, 1.0, 0.5, 0.2]
    with pytest.raises(ValueError):
        staleness_weight("inverse_sqrt", -1)


def test_async_mode_picks_the_buffered_strategy_and_refuses_deterministic_replay():
    assert isinstance(runtime().core_strategy, AsyncBuffer)
    assert isinstance(runtime(mode="sync").core_strategy, SyncRounds)
    with pytest.raises(ValueError, match="deterministic replay needs mode 'sync'"):
        Hyper(mode="async", deterministic=True)


def runtime(**hyper) -> ProjectRuntime:
    spec = ProjectSpec(name="tiny", network=TINY_NETWORK,
                       hyper={"period_s": 1, "learning_rate": 1.0, "mode": "async", "aggregation": "mean",
                              "spot_checks": False, **hyper})
    return ProjectRuntime(1, spec, spec.build_network(), tiny_dataset(30), Settings(), optimizer=PlainSgd())


def grad(rt, trainer, version, values, samples=1) -> MlitbError | None:
    payload = np.full(rt.param_count, values, np.float32)
    return trainer.send(encode(MessageType.GRADIENT, project=rt.id, round=version, count=samples, aux=5,
                               value=0.1 * samples, payload=payload))


async def started(rt):
    task = asyncio.get_running_loop().create_task(rt.run_round())
    for _ in range(3):
        await asyncio.sleep(0)
    return task


async def test_the_buffer_applies_exactly_every_k_results_with_later_ones_in_the_next_buffer():
    rt = runtime(buffer_size=2, staleness="inverse_sqrt")
    a, b = MemoryTrainer(rt, None), MemoryTrainer(rt, None)
    await asyncio.sleep(0)
    task = await started(rt)
    p0 = rt.params.copy()
    # three results of version 0 before the loop runs again: the third fills the next buffer, applied to version 1
    assert grad(rt, a, 0, 1.0, samples=2) is None
    assert grad(rt, b, 0, 2.0, samples=2) is None
    assert grad(rt, a, 0, 4.0, samples=1) is None  # a was sent work of version 0 again on answering
    first = await task
    assert first["contributions"] == 2 and first["staleness_mean"] == 0 and first["mode"] == "async"
    np.testing.assert_allclose(rt.params, p0 - (1.0 + 2.0) / 4, rtol=1e-6)
    p1 = rt.params.copy()
    task = await started(rt)
    assert grad(rt, b, 0, 3.0).code is ErrorCode.DUPLICATE_RESULT  # b completed the buffer: its work is version 1
    assert grad(rt, b, 1, 3.0, samples=3) is None
    second = await task
    assert second["contributions"] == 2 and second["staleness_max"] == 1 and second["staleness_mean"] == 0.5
    # FedBuff's step: sum(w g) / sum(samples), the weights not renormalised; a's leftover result is 1 version late
    w = 1 / math.sqrt(2)
    np.testing.assert_allclose(rt.params, p1 - (w * 4.0 + 3.0) / (1 + 3), rtol=1e-5)


async def test_a_result_older_than_max_staleness_is_refused_counted_and_its_trainer_goes_on():
    rt = runtime(buffer_size=1, max_staleness=1)
    slow, fast = MemoryTrainer(rt, None), MemoryTrainer(rt, None)
    await asyncio.sleep(0)
    for _ in range(3):  # three updates from the fast trainer while the slow one computes from version 0
        task = await started(rt)
        assert grad(rt, fast, rt.round, 1.0) is None
        await task
    task = await started(rt)
    err = grad(rt, slow, 0, 1.0)
    assert err is not None and err.code is ErrorCode.TOO_STALE and "max_staleness is 1" in str(err)
    assert grad(rt, slow, rt.round, 1.0) is None  # it was sent the newest parameters at once
    record = await task
    assert record["refused_stale"] == 1 and rt.telemetry.refused_stale_total == 1
    assert record["staleness_max"] == 0
    from mlitb.server.app import prometheus_text

    text = prometheus_text([rt], 0.0)
    for line in ('mlitb_async_mode{project="1"} 1', 'mlitb_refused_stale_total{project="1"} 1',
                 'mlitb_staleness_max{project="1"} 0', 'mlitb_rounds_total{project="1"} 4'):
        assert line in text, line


async def test_a_result_without_outstanding_work_or_for_another_version_is_a_duplicate():
    rt = runtime(buffer_size=4)
    a = MemoryTrainer(rt, None)
    await asyncio.sleep(0)
    task = await started(rt)
    assert grad(rt, a, 1, 1.0).code is ErrorCode.DUPLICATE_RESULT  # it was sent version 0
    assert grad(rt, a, 0, float("nan")).code is ErrorCode.NON_FINITE
    assert grad(rt, a, 0, 1.0) is None  # re-sent work after the refused one
    rt.stop()
    await task


def test_replay_refuses_a_closure_of_an_async_run_saying_why(tmp_path):
    from mlitb.closure import build_closure, snapshot
    from mlitb.closure.format import read_closure
    from mlitb.closure.replay import replay

    spec = ProjectSpec(name="tiny", network=TINY_NETWORK, hyper={"mode": "async"})
    rt = ProjectRuntime(1, spec, spec.build_network(), tiny_dataset(30), Settings())
    path = tmp_path / "async.zip"
    path.write_bytes(build_closure(snapshot(rt, "an async run")))
    assert read_closure(path.read_bytes()).spec.hyper.mode == "async"
    with pytest.raises(MlitbError) as exc:
        replay(path)
    assert exc.value.code is ErrorCode.NOT_REPLAYABLE and "asynchronous mode" in str(exc.value)


@pytest.mark.parametrize("rule", ["mean", "median"])
def test_a_buffer_weights_each_result_by_staleness_past_its_group_limit_and_under_a_robust_rule(rule):
    from mlitb.training.strategies.async_buffer import StalenessGroups

    rng = np.random.default_rng(1)
    grads = [rng.standard_normal(6).astype(np.float32) for _ in range(7)]
    weights = [1.0, 0.5, 0.25, 0.5, 0.2, 0.1, 1.0]  # five distinct weights: one past the group limit
    samples = [1, 2, 3, 4, 5, 6, 7]
    groups = StalenessGroups(Hyper(aggregation=rule), 6)
    for g, w, n in zip(grads, weights, samples):
        assert groups.add_finite(g, n, 0.5, w)
    assert not groups.add_finite(np.full(6, np.inf, np.float32), 1, 0.0, 0.05)
    assert groups.contributions == 7 and groups.samples == 28 and groups.loss_sum == 3.5
    if rule == "mean":
        expected = sum(w * g for g, w in zip(grads, weights)) / 28
    else:
        expected = np.median(np.stack([w * g / n for g, w, n in zip(grads, weights, samples)]), axis=0)
    np.testing.assert_allclose(groups.mean(), expected, rtol=1e-5, atol=1e-7)


async def test_the_trainer_that_completes_a_buffer_is_sent_exactly_one_new_work_after_the_update():
    rt = runtime(buffer_size=1)
    a = MemoryTrainer(rt, None)
    works, send = [], a.link.send
    a.link.send = lambda frame: (frame[0] == MessageType.WORK and works.append(frame)) or send(frame)
    await asyncio.sleep(0)
    task = await started(rt)
    assert len(works) == 1
    assert grad(rt, a, 0, 1.0) is None
    await task
    task = await started(rt)
    await asyncio.sleep(0.6)  # past two checks for overdue work (every quarter period)
    assert len(works) == 2  # not one more from the overdue check while its result was being applied
    rt.stop()
    await task


@pytest.mark.parametrize("mode", ["async", "sync"])
async def test_a_result_struck_by_a_spot_check_is_answered_all_the_same(mode):
    # the strike refuses the result before the strategy sees it; the strategy is told, so neither an async trainer
    # idles until its work is overdue (two periods) nor a sync round waits out its period for the struck trainer
    rt = runtime(buffer_size=4, spot_checks=True, mode=mode)
    rt.spot.rng.random = lambda: 0.0  # every result is drawn for a check
    a = MemoryTrainer(rt, None, address="203.0.113.5")  # a stranger's address: not exempt from checks
    works, send = [], a.link.send
    a.link.send = lambda frame: (frame[0] == MessageType.WORK and works.append(frame)) or send(frame)
    await asyncio.sleep(0)
    task = await started(rt)
    assert len(works) == 1
    err = grad(rt, a, 0, 1.0)  # not the gradient of its examples
    assert err is not None and err.code is ErrorCode.SPOT_CHECK_FAILED
    if mode == "async":
        assert len(works) == 2  # its next work at once
        rt.stop()
        await task
    else:
        record = await asyncio.wait_for(task, timeout=0.5)  # the round closed without waiting out its 1 s period
        assert record["contributions"] == 0


def clocked(**hyper) -> tuple[ProjectRuntime, list[float]]:
    """A runtime on a clock the test moves (the strategy's expected arrivals and hold deadlines follow it)."""
    now = [0.0]
    spec = ProjectSpec(name="tiny", network=TINY_NETWORK,
                       hyper={"period_s": 1, "learning_rate": 1.0, "mode": "async", "aggregation": "mean",
                              "spot_checks": False, **hyper})
    rt = ProjectRuntime(1, spec, spec.build_network(), tiny_dataset(30), Settings(), clock=lambda: now[0],
                        optimizer=PlainSgd())
    return rt, now


def work_versions(trainer) -> list[int]:
    """The versions of the WORK frames the trainer is sent from now on."""
    versions, send = [], trainer.link.send
    trainer.link.send = lambda frame: (frame[0] == MessageType.WORK and versions.append(
        decode(frame, 1 << 30).round)) or send(frame)
    return versions


async def test_a_result_just_before_the_buffer_fills_waits_for_that_update_and_then_computes_on_it():
    # without the wait every trainer but the K-th started from the version before the update its own result
    # completed: with K = N nearly every result was a version stale (bench/async.py: twice sync's time to target)
    rt, now = clocked(buffer_size=2)
    a, b = MemoryTrainer(rt, None), MemoryTrainer(rt, None)
    await asyncio.sleep(0)
    task = await started(rt)
    sent_a, sent_b = work_versions(a), work_versions(b)
    now[0] = 0.8  # b's result is expected one period after its work went out: within a quarter period
    assert grad(rt, a, 0, 1.0) is None
    assert sent_a == []  # held for the update
    assert grad(rt, b, 0, 1.0) is None
    record = await task
    assert record["contributions"] == 2 and record["staleness_max"] == 0
    task = await started(rt)
    assert sent_a == [1] and sent_b == [1]  # both compute on the update their results made
    assert grad(rt, a, 1, 1.0) is None
    rt.stop()
    await task


async def test_a_result_far_from_the_update_is_answered_at_once_and_a_held_trainer_is_released_if_it_is_late():
    rt, now = clocked(buffer_size=3)
    a, b, c = MemoryTrainer(rt, None), MemoryTrainer(rt, None), MemoryTrainer(rt, None)
    await asyncio.sleep(0)
    task = await started(rt)
    sent_a = work_versions(a)
    now[0] = 0.1  # b's and c's results are expected 0.9 s from now
    assert grad(rt, a, 0, 1.0) is None
    assert sent_a == [0]  # not held: its next work at once, of the version there is
    now[0] = 0.8
    assert grad(rt, a, 0, 1.0) is None  # its second result, of version 0: the buffer needs one more
    assert sent_a == [0]  # held: b and c are due within a quarter period
    now[0] = 1.4  # both went silent: past a's hold (twice the window after its result)
    await asyncio.sleep(0.3)  # one check of the strategy's clock (every quarter period)
    assert sent_a == [0, 0] and not task.done()  # released with work of the version there is
    rt.stop()
    await task


async def test_k_is_at_most_the_number_of_connected_trainers():
    # K = 4 with two trainers would wait out the flush time (two periods) at every update; and a fleet that shrank
    # below K is applied as soon as the buffer holds one result per trainer left
    rt, now = clocked(buffer_size=4)
    a, b = MemoryTrainer(rt, None), MemoryTrainer(rt, None)
    await asyncio.sleep(0)
    task = await started(rt)
    assert grad(rt, a, 0, 1.0) is None and grad(rt, b, 0, 1.0) is None
    record = await asyncio.wait_for(task, timeout=0.2)
    assert record["contributions"] == 2
    c = MemoryTrainer(rt, None)
    await asyncio.sleep(0)
    task = await started(rt)
    assert len(rt.trainer_ids()) == 3
    # a was sent its work at once (b was not due for a period), before the update; b, whose result filled the
    # buffer, after it
    assert grad(rt, a, 0, 1.0) is None and grad(rt, b, 1, 1.0) is None
    await asyncio.sleep(0.05)
    assert not task.done()  # c's result is still to come
    rt.remove_client(c.client.id)
    record = await asyncio.wait_for(task, timeout=0.2)
    assert record["contributions"] == 2


async def test_a_result_that_fills_the_buffer_between_updates_gets_work_of_the_update_it_completes():
    rt = runtime(buffer_size=1)
    a, b = MemoryTrainer(rt, None), MemoryTrainer(rt, None)
    await asyncio.sleep(0)
    task = await started(rt)
    sent_b = work_versions(b)
    assert grad(rt, a, 0, 1.0) is None
    await task  # version 1; b still computes from version 0
    assert grad(rt, b, 0, 1.0) is None  # between updates (the runtime checkpointing, say): it fills the next buffer
    await (await started(rt))  # version 2, from b's result
    task = await started(rt)
    assert sent_b == [2]  # not version 1, which its own result was about to replace
    rt.stop()
    await task
