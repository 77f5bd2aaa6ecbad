"""One local Ray cluster (2 CPUs) for the cluster tests (package scope: started once, stopped after them), and on it
one `mlitb serve --ray` of two gateways and one MNIST project per test module (`cluster`)."""

from __future__ import annotations

import socket

import pytest

from mlitb.config import Settings


@pytest.fixture(scope="package")
def ray_cluster():
    ray = pytest.importorskip("ray")
    # the actors take no CPU reservation (num_cpus=0), so the 2 CPUs bound only the worker processes Ray starts
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 << 20, log_to_driver=False,
             configure_logging=False)
    yield ray
    ray.shutdown()


NETWORK = [{"type": "input", "shape": [28, 28, 1]}, {"type": "flatten"}, {"type": "dense", "units": 10,
                                                                          "activation": "softmax"}]


def free_ports(n: int) -> int:
    """A port P with P..P+n-1 free now."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + n < 65000 and all(_free(base + i) for i in range(n)):
            return base
    raise RuntimeError("no free port range")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


@pytest.fixture(scope="module")
def cluster(ray_cluster, tmp_path_factory):
    from mlitb.cluster.launch import start_cluster

    settings = Settings(data_dir=tmp_path_factory.mktemp("cluster"), checkpoint_every=2)
    # the single-process default rule (centered_clip): its gateways forward votes through Ray (mlitb/cluster/votes.py)
    spec = {"name": "cluster", "dataset": "mnist", "network": NETWORK, "hyper": {"period_s": 1.0, "spot_checks": False}}
    c = start_cluster(settings, 2, free_ports(2), [spec], public_host="127.0.0.1", grace_s=0.4)
    yield c
    for h in c.gateways + list(c.projects.values()):
        ray_cluster.kill(h)
