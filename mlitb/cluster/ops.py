"""A gateway's operations endpoints: GET /api/gateways (where to connect), GET /api/health and /metrics.

/metrics is the prometheus_client library's exposition of collectors that read the gateway's state at
scrape time: per-gateway series (connected clients, partials sent) and per-project series (round,
samples, refused frames) labelled with the gateway's name, then the single process's series of its public
projects as this gateway sees them (mlitb/server/prometheus.py: its clients, latencies, bytes).
No Ray here: `gw` is anything with `name`, `url`, `registry` (whose `settings` are the cluster's), `clients()`
and `async gateways()` (the GatewayActor); the app is create_app's. Closures saved at a gateway are the
project's, stored in the cluster's shared zoo (`share_closures`).
"""

from __future__ import annotations

import time
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from mlitb.cluster.closures import closure_through_gateway
from mlitb.server.prometheus import ProjectsCollector


def share_closures(app: FastAPI, zoo: Path) -> None:
    """Closures saved at a gateway are the project's (built by the project actor: mlitb/cluster/closures.py) and
    stored in the cluster's zoo, `zoo` (the cluster's data dir): one folder for every gateway that sees that path
    (the project actor's host, or a shared file system), so a closure saved at one gateway is listed at the others.
    It counts against each gateway's storage quota as its own folder does."""
    app.state.project_closure = closure_through_gateway
    app.state.closures_dir = zoo
    storage = app.state.storage
    if not zoo.resolve().is_relative_to(storage.data_dir.resolve()):
        storage.also_stores_in.append(zoo)


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
    # the single-process app's /metrics is replaced on a gateway by one with the gateway's series as well
    app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", None) != "/metrics"]
    share_closures(app, gw.registry.settings.data_dir / "closures")

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
