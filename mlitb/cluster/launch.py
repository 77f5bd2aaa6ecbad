"""`mlitb serve --ray`: start or join a Ray cluster, then one project actor per stored project (on this node, where
the SQLite store is) and G gateway actors on ports P, P+1, ... (spread over the cluster's nodes)."""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from mlitb.cluster.actors import GatewayActor, ProjectActor
from mlitb.cluster.core import not_in_cluster
from mlitb.config import Settings
from mlitb.errors import ErrorCode, MlitbError
from mlitb.master.project import Hyper
from mlitb.master.registry import ProjectRegistry
from mlitb.store import ProjectStore

log = logging.getLogger("mlitb.cluster")


@dataclass
class Cluster:
    projects: dict[int, object]  # project id -> ProjectActor handle
    gateways: list[object]  # GatewayActor handles, in port order
    urls: list[str]
    secrets: dict[int, dict] = field(default_factory=dict)  # tokens of projects created now (shown once)


def create_projects(settings: Settings, specs: list[dict]) -> tuple[list[int], dict[int, dict]]:
    """Store new projects (from --new-project files) and list every stored project id."""
    store = ProjectStore(settings.data_dir / "mlitb.sqlite3")
    registry = ProjectRegistry(settings, store)
    secrets = {}
    for spec in specs:
        hyper = (spec.get("hyper") or {}) if isinstance(spec, dict) else {}
        try:
            refusal = not_in_cluster(Hyper.model_validate(hyper))
        except ValueError:  # not valid hyper-parameters at all: registry.create refuses them with its own error
            refusal = None
        if refusal is not None:  # refused here, at start, rather than by the project actor's first round
            store.close()
            raise MlitbError(ErrorCode.INVALID_HYPER, f"cluster mode: {refusal} (docs/cluster.md)")
        runtime, tokens = registry.create(spec)
        secrets[runtime.id] = tokens
    ids = sorted(registry.projects)
    store.close()
    return ids, secrets


def start_cluster(settings: Settings, gateways: int, port: int, specs: list[dict] = (),
                  public_host: str | None = None, grace_s: float = 1.0) -> Cluster:
    """Actors on the Ray cluster this process is connected to (ray.init first)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    ids, secrets = create_projects(settings, list(specs))
    here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
    projects = {pid: ProjectActor.options(scheduling_strategy=here, name=f"mlitb-project-{pid}")
                .remote(settings, pid, grace_s) for pid in ids}
    handles = [GatewayActor.options(scheduling_strategy="SPREAD", name=f"mlitb-gateway-{i}")
               .remote(settings, f"gw{i}", port + i, projects, public_host) for i in range(gateways)]
    ready = ray.get([h.ready.remote() for h in handles])
    return Cluster(projects, handles, [r["url"] for r in ready], secrets)


def serve_cluster(settings: Settings, address: str | None, gateways: int, port: int, spec_files: list[str],
                  public_host: str | None = None) -> int:
    """Blocks until interrupted; the actors end with this driver."""
    ray.init(address=address, include_dashboard=False, log_to_driver=True)
    specs = [json.loads(Path(f).read_text()) for f in spec_files]
    cluster = start_cluster(settings, gateways, port, specs, public_host)
    for pid, tokens in cluster.secrets.items():
        print(f"project {pid} created; owner token {tokens['owner_token']} (shown once)", flush=True)
    for url in cluster.urls:
        print(f"gateway {url}", flush=True)
    # SIGTERM exits like Ctrl-C: Ray's exit handler then stops the local cluster it started (actors included)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        ray.shutdown()
