"""The JSON summary of a project that the REST routes return (list, get, create, fork)."""

from __future__ import annotations

from mlitb.master.loop import ProjectRuntime


def project_summary(rt: ProjectRuntime) -> dict:
    """What GET /api/projects/{id} says about a project (and creation and forks, with their tokens)."""
    roles = [c.role for c in rt.clients.values()]
    return {
        "id": rt.id, "name": rt.spec.name, "dataset": rt.spec.dataset, "round": rt.round, "private": rt.spec.private,
        "trainers": roles.count("trainer"), "trackers": roles.count("tracker"),
        "param_count": rt.param_count, "num_classes": rt.network.num_classes,
        "labels": list(rt.dataset.labels) if rt.dataset else None,
        "test_error": rt.latest_eval[1] if rt.latest_eval else None,
        "hyper": rt.spec.hyper.model_dump(), "network": rt.network.to_spec(), "seed": rt.spec.seed,
    }
