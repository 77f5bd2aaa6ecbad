"""Spot checks over real sockets (default settings, trainers from 127.0.0.x): a volunteer faking results is struck
and quarantined, and can come back under its key only to be refused; honest seeded trainers are never struck. The same
holds in synchronous rounds and under the asynchronous strategy (`hyper.mode = "async"`, FedBuff), which the spot-check
wrapper wraps alike."""

import asyncio

import httpx
import pytest

from mlitb.workers.hostile import TrainerLog, faking_answer, socket_trainer
from tests.socket_training import create_project, honest_answer

HONEST_KEYS = ["honest-volunteer-key-one", "honest-volunteer-key-two"]
FAKER_KEY = "faking-volunteer-key-0001"


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_faker_is_quarantined_and_refused_while_honest_trainers_pass_every_check(server, mode):
    pid = create_project(server.url, hyper={"period_s": 1, "mode": mode})["id"]
    ws_url = server.url.replace("http://", "ws://") + "/ws"
    stop = asyncio.Event()
    honest = [TrainerLog(), TrainerLog()]
    faker = TrainerLog()
    tasks = [asyncio.create_task(socket_trainer(ws_url, pid, f"127.0.0.{2 + i}", honest_answer(i), log, stop, key))
             for i, (log, key) in enumerate(zip(honest, HONEST_KEYS))]
    tasks.append(asyncio.create_task(socket_trainer(ws_url, pid, "127.0.0.9", faking_answer(honest_answer(9), 0.5, 1),
                                                    faker, stop, FAKER_KEY)))
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        assert (await http.get(f"/api/projects/{pid}")).json()["hyper"]["mode"] == mode
        # 30 rounds, and the faker's quarantine (rounds can be faster than it answers: at most ~16 answers a second)
        for _ in range(1200):
            if (await http.get(f"/api/projects/{pid}")).json()["round"] >= 30 and faker.closed is not None:
                break
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.gather(*tasks)
        board = {r["volunteer"]: r for r in (await http.get(f"/api/projects/{pid}/volunteers")).json()}
        metrics = (await http.get(f"/api/projects/{pid}/metrics")).json()
    codes = [e["code"] for e in faker.errors]
    assert codes.count("SPOT_CHECK_FAILED") == 1 and codes[-1] == "QUARANTINED", codes
    assert faker.closed is not None and faker.closed[0] == 1008  # quarantine ends its connection
    assert all(not log.errors for log in honest)  # never struck: every check of theirs passed
    struck = [r for r in board.values() if r["strikes"]]
    assert len(struck) == 1 and struck[0]["quarantined"] and struck[0]["strikes"] == 2
    assert sum(1 for r in board.values() if not r["strikes"]) == 2
    assert metrics[-1]["spot_checks_total"] >= 30 and metrics[-1]["spot_check_failures_total"] == 2
    # the quarantine is the volunteer's, not the connection's: its key is refused at JOIN
    again = TrainerLog()
    await socket_trainer(ws_url, pid, "127.0.0.9", honest_answer(3), again, asyncio.Event(), FAKER_KEY)
    assert [e["code"] for e in again.errors] == ["QUARANTINED"] and not again.joined


async def test_a_lazy_faker_with_commitments_that_agree_with_its_sum_is_caught_by_a_recomputed_batch(server):
    """The faker knows the directions (they come from the seed) and spreads its fake sum's projections over its
    batches, so its commitments pass the sum check; one recomputed batch shows them wrong. The honest trainers'
    committed results pass every check, each recomputing one batch of 32, not the result's 100 examples."""
    pid = create_project(server.url)["id"]
    ws_url = server.url.replace("http://", "ws://") + "/ws"
    stop = asyncio.Event()
    honest, faker = [TrainerLog(), TrainerLog()], TrainerLog()
    tasks = [asyncio.create_task(socket_trainer(ws_url, pid, f"127.0.0.{2 + i}", honest_answer(i), log, stop, key))
             for i, (log, key) in enumerate(zip(honest, HONEST_KEYS))]
    tasks.append(asyncio.create_task(socket_trainer(
        ws_url, pid, "127.0.0.9", faking_answer(honest_answer(9), 0.5, 1, commit=True), faker, stop, FAKER_KEY)))
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        for _ in range(1200):
            if (await http.get(f"/api/projects/{pid}")).json()["round"] >= 20 and faker.closed is not None:
                break
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.gather(*tasks)
        metrics = (await http.get(f"/api/projects/{pid}/metrics")).json()
    codes = [e["code"] for e in faker.errors]
    assert codes.count("SPOT_CHECK_FAILED") == 1 and codes[-1] == "QUARANTINED", codes
    assert all("recomputed result differs" in e["message"] for e in faker.errors), faker.errors
    assert all(not log.errors for log in honest)
    last = metrics[-1]
    assert last["spot_check_failures_total"] == 2 and last["spot_checks_batch_total"] >= 10
    assert last["spot_checks_committed_total"] >= last["spot_checks_batch_total"]
    # one batch of <= 32 examples per check (a faked result claims 100 but the check reads one batch of it)
    assert last["spot_check_samples_total"] <= 32 * last["spot_checks_total"]


def inflating_answer(honest, claim: int):
    """A trainer that computes a small batch and claims `claim` examples for it (its sum scaled up): checking it
    means recomputing `claim` examples, more than the master's CPU budget pays for at once."""
    def answer(params, ids, work_ms, seed):
        grad, n, loss = honest(params, ids, work_ms, seed)[:3]  # no commitments: the whole result is recomputed
        return grad * (claim / n), claim, loss * (claim / n)
    return answer


async def test_a_faker_claiming_more_than_one_check_recomputes_at_once_is_still_struck_and_quarantined(server):
    pid = create_project(server.url)["id"]
    ws_url = server.url.replace("http://", "ws://") + "/ws"
    stop = asyncio.Event()
    honest, faker = [TrainerLog(), TrainerLog()], TrainerLog()
    tasks = [asyncio.create_task(socket_trainer(ws_url, pid, f"127.0.0.{2 + i}", honest_answer(i), log, stop, key))
             for i, (log, key) in enumerate(zip(honest, HONEST_KEYS))]
    tasks.append(asyncio.create_task(socket_trainer(ws_url, pid, "127.0.0.9", inflating_answer(honest_answer(9), 60_000),
                                                    faker, stop, FAKER_KEY)))
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        for _ in range(1200):
            if faker.closed is not None:
                break
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.gather(*tasks)
        metrics = (await http.get(f"/api/projects/{pid}/metrics")).json()
    codes = [e["code"] for e in faker.errors]
    # each check of 60,000 examples is finished over several rounds; meanwhile its drawn results weigh a tenth
    assert codes.count("SPOT_CHECK_FAILED") == 1 and codes[-1] == "QUARANTINED", codes
    assert faker.closed[0] == 1008
    honest_codes = [e["code"] for log in honest for e in log.errors]
    # never struck (a result late for its round while the master recomputes is refused STALE_ROUND, as any late one)
    assert not set(honest_codes) - {"STALE_ROUND"}, honest_codes
    # at least the first check of 60,000 examples did not fit the budget (later ones may, once its cost is measured)
    # checked at once when the burst allows it, else deferred to later rounds: struck either way
    assert metrics[-1]["spot_check_failures_total"] == 2
