"""A gateway's operations endpoints: GET /api/gateways (where to connect), GET /api/health and /metrics.

/metrics is the prometheus_client library's exposition of collectors that read the gateway's state at
scrape time: per-gateway series (connected clients, partials sent) and per-project series (round,
samples, refused frames) labelled with the gateway's name, then the single process's series of its public
projects as this gateway sees them (mlitb/server/prometheus.py: its clients, latencies, bytes).
No Ray here: `gw` is anything with `name`, `url`, `registry`, `clients()` and `async gateways()` (the GatewayActor).
"""

from __future__ import annotations

import time

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from mlitb.errors import ErrorCode, MlitbError
from mlitb.server.prometheus import ProjectsCollector

CLOSURE_SAVE = "/api/projects/{project_id}/closures"


class GatewayCollector:
    def __init__(self, gw):
        self.gw = gw

    def collect(self):
        gw, name = self.gw, self.gw.name
        clients = GaugeMetricFamily("mlitb_gateway_clients", "Clients connected to this gateway", labels=["gateway"])
        clients.add_metric([name], gw.clients())
        yield clients
        rnd = GaugeMetricFamily("mlitb_project_round", "Newest round this gateway took", labels=["gateway", "project"])
        sent = CounterMetricFamily("mlitb_gateway_partials", "Partials this gateway forwarded",
                                   labels=["gateway", "project"])
        samples = CounterMetricFamily("mlitb_project_samples", "Samples this gateway's clients trained on",
                                      labels=["gateway", "project"])
        rejected = CounterMetricFamily("mlitb_project_rejected_frames", "Frames this gateway refused",
                                       labels=["gateway", "project"])
        for rt in gw.registry.projects.values():
            labels = [name, str(rt.id)]
            rnd.add_metric(labels, rt.round)
            sent.add_metric(labels, rt.strategy.partials_sent)
            samples.add_metric(labels, rt.samples_total)
            rejected.add_metric(labels, rt.rejected_total)
        yield from (rnd, sent, samples, rejected)


def add_gateway_routes(app: FastAPI, gw) -> None:
    # the single-process app's /metrics is replaced on a gateway by one with the gateway's series as well; saving a
    # closure is refused: a gateway's runtime has the round's parameters but not the project's optimizer state or
    # metrics (they are the project actor's), so its closure would not be the project's
    app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", None) != "/metrics"]

    @app.post(CLOSURE_SAVE, include_in_schema=False)
    def save_closure(project_id: int) -> None:
        raise MlitbError(ErrorCode.FORBIDDEN, "a gateway cannot save a project's closure in cluster mode (the "
                         "optimizer state and metrics live in the project actor; docs/cluster.md)")
    app.router.routes.insert(0, app.router.routes.pop())  # matched before the included closure routes

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(GatewayCollector(gw))
        public = [rt for rt in gw.registry.projects.values() if not rt.spec.private]
        registry.register(ProjectsCollector(public, time.process_time()))
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/gateways", summary="The cluster's live gateways, least loaded first")
    async def gateways() -> list[dict]:
        return await gw.gateways()

    @app.get("/api/health", summary="This gateway is serving")
    def health() -> JSONResponse:
        return JSONResponse({"status": "ok", "gateway": gw.name, "url": gw.url, "clients": gw.clients(),
                             "projects": sorted(gw.registry.projects)})
