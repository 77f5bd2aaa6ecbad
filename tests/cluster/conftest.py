"""One local Ray cluster (2 CPUs) for the cluster tests (package scope: started once, stopped after them)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="package")
def ray_cluster():
    ray = pytest.importorskip("ray")
    # the actors take no CPU reservation (num_cpus=0), so the 2 CPUs bound only the worker processes Ray starts
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 << 20, log_to_driver=False,
             configure_logging=False)
    yield ray
    ray.shutdown()
