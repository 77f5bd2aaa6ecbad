"""A registry backed by SQLite resumes its projects from the last checkpoint."""

import asyncio

import numpy as np

from mlitb.config import Settings
from mlitb.master.registry import ProjectRegistry
from mlitb.store import ProjectStore
from mlitb.workers.simulated import MemoryTrainer
from tests.helpers import TINY_NETWORK


def quadratic(params, ids):
    n = max(1, len(ids))
    return (params - 1.0) * n, n, float(np.sum((params - 1.0) ** 2) * n)


async def test_projects_resume_from_their_last_checkpoint_after_a_restart(tmp_path):
    settings = Settings(data_dir=tmp_path, checkpoint_every=3)
    reg = ProjectRegistry(settings, ProjectStore(tmp_path / "db"))
    rt, _ = reg.create({"name": "tiny", "network": TINY_NETWORK, "hyper": {"period_s": 1, "learning_rate": 0.1}})
    MemoryTrainer(rt, quadratic)
    while rt.round < 7:
        await asyncio.sleep(0.001)
    # the "crash": the project's loop task dies where it is, with no shutdown and no final checkpoint
    loop_task = next(t for t in asyncio.all_tasks() if t.get_name() == f"project-{rt.id}")
    loop_task.cancel()
    await asyncio.sleep(0)
    reg.store.close()

    again = ProjectRegistry(settings, ProjectStore(tmp_path / "db"))
    restored = again.get(rt.id)
    checkpointed = restored.round
    assert checkpointed % 3 == 0 and 0 <= rt.round - checkpointed <= 3  # at most K rounds lost
    assert [m["round"] for m in restored.metrics] == list(range(checkpointed))
    assert restored.metrics[-1]["samples"] > 0
    # new projects do not reuse the id
    assert again.create({"name": "next", "network": TINY_NETWORK})[0].id == rt.id + 1
    await again.shutdown()


async def test_shutdown_checkpoints_every_project_and_closes_clients_for_reconnection(tmp_path):
    settings = Settings(data_dir=tmp_path, checkpoint_every=1000)
    reg = ProjectRegistry(settings, ProjectStore(tmp_path / "db"))
    rt, _ = reg.create({"name": "tiny", "network": TINY_NETWORK, "hyper": {"period_s": 1, "learning_rate": 0.1}})
    trainer = MemoryTrainer(rt, quadratic)
    while rt.round < 4:
        await asyncio.sleep(0.01)
    await reg.shutdown()
    assert trainer.link.closed[0] == 1012
    restored = ProjectRegistry(settings, ProjectStore(tmp_path / "db")).get(rt.id)
    assert restored.round == rt.round
    np.testing.assert_array_equal(restored.params, rt.params)
    np.testing.assert_array_equal(restored.history, rt.history)
