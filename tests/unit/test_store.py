"""SQLite persistence: checkpoints round-trip and are written atomically."""

import numpy as np
import pytest

from mlitb.store import ProjectStore


def test_a_checkpoint_round_trips_parameters_state_round_and_metrics(tmp_path):
    store = ProjectStore(tmp_path / "s.sqlite3")
    store.add_project(3, {"name": "p"}, 1.0)
    p, h = np.arange(5, dtype=np.float32), np.ones(5, np.float32)
    store.save_checkpoint(3, 7, p, h, [{"round": 5, "loss": 1.0}, {"round": 6, "loss": 0.5}], 2.0)
    store.close()
    [saved] = ProjectStore(tmp_path / "s.sqlite3").load_all()
    assert (saved.id, saved.spec, saved.round) == (3, {"name": "p"}, 7)
    np.testing.assert_array_equal(saved.params, p)
    np.testing.assert_array_equal(saved.history, h)
    assert [m["round"] for m in saved.metrics] == [5, 6]


def test_a_failed_checkpoint_leaves_the_previous_one_whole(tmp_path):
    store = ProjectStore(tmp_path / "s.sqlite3")
    store.add_project(1, {}, 0.0)
    store.save_checkpoint(1, 10, np.zeros(3, np.float32), np.zeros(3, np.float32), [{"round": 9}], 0.0)
    bad_metrics = [{"round": 10}, {"no_round": True}]  # the second row fails mid-transaction
    with pytest.raises(KeyError):
        store.save_checkpoint(1, 20, np.ones(3, np.float32), np.ones(3, np.float32), bad_metrics, 0.0)
    [saved] = store.load_all()
    assert saved.round == 10 and saved.params.sum() == 0 and [m["round"] for m in saved.metrics] == [9]


def test_deleting_a_project_removes_its_checkpoint_and_metrics(tmp_path):
    store = ProjectStore(tmp_path / "s.sqlite3")
    store.add_project(1, {}, 0.0)
    store.save_checkpoint(1, 1, np.zeros(1, np.float32), np.zeros(1, np.float32), [{"round": 0}], 0.0)
    store.delete_project(1)
    assert store.load_all() == []
