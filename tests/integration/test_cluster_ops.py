"""A gateway's /metrics (mlitb/cluster/ops.py) without Ray: the prometheus_client exposition carries the gateway's own
series and the single process's per-project series of its public projects, in the text format one process serves.
(Saving a closure at a gateway: tests/integration/test_cluster_closures.py.)"""

from __future__ import annotations

import re
from types import SimpleNamespace

from fastapi.testclient import TestClient

from mlitb.cluster.core import LocalUpstream, ProjectCore
from mlitb.cluster.gateway import GatewayRuntime
from mlitb.cluster.ops import add_gateway_routes
from mlitb.config import Settings
from mlitb.master.loop import ProjectRuntime
from mlitb.master.project import ProjectSpec
from mlitb.server.app import create_app
from tests.helpers import TINY_NETWORK, tiny_dataset


def test_a_gateway_serves_its_series_and_the_projects_series_of_one_process(tmp_path):
    runtimes = {}
    for pid, private in ((1, False), (2, True)):
        s = ProjectSpec(name=f"p{pid}", network=TINY_NETWORK, private=private)
        core = ProjectCore(ProjectRuntime(pid, s, s.build_network(), tiny_dataset(), Settings()))
        runtimes[pid] = GatewayRuntime(pid, s, s.build_network(), tiny_dataset(), Settings(),
                                       upstream=LocalUpstream(core), gateway="gw0")
    gw = SimpleNamespace(name="gw0", url="http://127.0.0.1:1", clients=lambda: 0,
                         registry=SimpleNamespace(projects=runtimes, settings=Settings(data_dir=tmp_path)))
    app = create_app(Settings(data_dir=tmp_path / "gateways" / "gw0"))
    add_gateway_routes(app, gw)
    r = TestClient(app).get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert re.search(r'^mlitb_gateway_clients\{gateway="gw0"\} 0\.0$', text, re.M)
    assert re.search(r'^mlitb_gateway_partials_total\{gateway="gw0",project="2"\} 0\.0$', text, re.M)
    assert re.search(r'^mlitb_trainers\{project="1"\} 0\.0$', text, re.M)
    assert re.search(r'^mlitb_loss\{project="1"\} NaN$', text, re.M)
    assert 'mlitb_trainers{project="2"}' not in text  # a private project's details are not public
    assert "# TYPE mlitb_rounds_total counter" in text and "# TYPE process_cpu_seconds_total counter" in text

