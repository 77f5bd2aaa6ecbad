"""`mlitb worker --ray --engine torch` (mlitb/cluster/native.py): a torch trainer placed as a Ray actor trains the
cluster's project through a gateway, and is restarted by Ray when its process is killed; `--device cuda` on a
cluster without GPUs is refused at once instead of pending for ever."""

from __future__ import annotations

import os
import signal

import httpx
import numpy as np
import pytest

from mlitb.model.tfjs import WEIGHTS_FILE

pytestmark = pytest.mark.timeout(240)


def _weights(url: str) -> np.ndarray:
    return np.frombuffer(httpx.get(f"{url}/api/projects/1/model/{WEIGHTS_FILE}", timeout=10).content, np.float32)


def _torch_rounds(cluster) -> list[dict]:
    """Rounds the project actor applied with a contribution (only the torch trainer trains in this module)."""
    import ray
    return [m for m in ray.get(cluster.projects[1].status.remote(), timeout=30)["metrics"] if m["contributions"]]


def test_a_torch_trainer_placed_as_a_ray_actor_trains_the_project_and_is_restarted_when_killed(cluster):
    pytest.importorskip("torch")
    from mlitb.cluster.native import torch_on_ray

    before = _weights(cluster.urls[0])
    killed: list[int] = []
    seen: list[dict] = []

    def on_status(statuses: list[dict]) -> bool:
        [s] = statuses
        seen.append(s)
        if not killed and (s.get("samples_per_s") or 0) > 0 and len(_torch_rounds(cluster)) >= 2:
            killed.append(s["pid"])
            os.kill(s["pid"], signal.SIGKILL)  # the actor's process dies: Ray restarts it and retries its run
            return False
        # done once the restarted actor has trained again (the 75 s are an upper bound for a loaded machine)
        return bool(killed) and s.get("pid") not in (None, killed[0]) and (s.get("samples_per_s") or 0) > 0 \
            and len(_torch_rounds(cluster)) >= 4

    [result] = torch_on_ray(cluster.urls[0], 1, trainers=1, trackers=0, device="cpu", threads=1, seconds=75.0,
                            on_status=on_status)
    assert killed, seen[-3:]
    assert result["role"] == "trainer" and result["fatal"] is None, result
    assert result["pid"] != killed[0] and result["backend"] == "torch-cpu (1 thread)"
    assert result["samples_per_s"] > 0 and result["gateway"] in cluster.urls  # trained again after the restart
    rounds = _torch_rounds(cluster)
    assert len(rounds) >= 4 and all(m["contributions"] == 1 for m in rounds)
    after = _weights(cluster.urls[0])
    assert after.shape == before.shape and np.abs(after - before).max() > 0


def test_device_cuda_on_a_cluster_without_gpus_is_refused_with_a_message(cluster, monkeypatch, capsys):
    import ray

    from mlitb.cluster import native

    assert ray.cluster_resources().get("GPU", 0) == 0  # the test cluster: 2 CPUs, no GPU
    with pytest.raises(ValueError, match="one GPU per trainer"):
        native.placement("cuda", 1, 1)
    assert native.placement("auto", 1, 2) == ("cpu", {"num_cpus": 2})
    # the command: refused with exit status 2 and the reason, no actor placed (the test's cluster is used as is)
    from mlitb.cli import main

    monkeypatch.setattr(native.ray, "init", lambda **_: None)
    monkeypatch.setattr(native.ray, "shutdown", lambda: None)
    rc = main(["worker", "--ray", "--engine", "torch", "--device", "cuda", "--trainers", "2", "--trackers", "0",
               "--server", cluster.urls[0], "--project", "1"])
    assert rc == 2 and "one GPU per trainer (2); the cluster has 0" in capsys.readouterr().err
