"""The FastAPI application: REST for projects, models, metrics and data; `/ws` for workers;
the built browser client at `/`. Every response is cross-origin isolated (COOP/COEP) so
the browser may use wasm threads and SIMD."""

from __future__ import annotations

import json
import shutil
import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Query, Request, WebSocket
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from mlitb import __version__
from mlitb.config import Settings
from mlitb.errors import ErrorCode, MlitbError, check_split
from mlitb.http_errors import install_error_handlers
from mlitb.master import scheduler
from mlitb.master.loop import ProjectRuntime
from mlitb.master.project import ProjectSpec
from mlitb.master.registry import ProjectRegistry
from mlitb.store import ProjectStore
from mlitb.model import WEIGHTS_FILE, model_json
from mlitb.data import routes as data_routes
from mlitb.server import auth
from mlitb.server.creation import CreationLimits
from mlitb.server.storage import Storage
from mlitb.server.summary import project_summary as summary
from mlitb.server.uploads import router as uploads_router
from mlitb.server.ws import ConnectionLimits, serve_client
from mlitb.server.closures import closure_here, router as closure_router
from mlitb.server.examples import router as examples_router
from mlitb.server.hyper import router as hyper_router
from mlitb.server.model_upload import router as model_upload_router
from mlitb.server.prometheus import PROMETHEUS_TYPE, prometheus_text
from mlitb.trust.pow import make_challenge

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class ErrorBody(BaseModel):
    """Every error response: a stable code (docs/errors.md), its number, a readable message."""

    code: str
    number: int
    message: str


# documented on every route; which ones a route can return is in its description and docs/errors.md
ERROR_RESPONSES = {status: {"model": ErrorBody, "description": desc} for status, desc in {
    400: "malformed request", 401: "a token is needed", 403: "the token does not allow this",
    404: "unknown project or path", 405: "method not allowed", 409: "conflicts with the project's state",
    413: "too large", 416: "range outside the data", 422: "invalid request body or parameters",
    429: "a limit was hit", 503: "a data set is not installed, or the project is restarting", 507: "a storage quota or the disk is full"}.items()}


def create_app(settings: Settings | None = None, registry: ProjectRegistry | None = None) -> FastAPI:
    settings = settings or Settings()
    store = ProjectStore(settings.data_dir / "mlitb.sqlite3")
    storage = Storage(settings, store.examples_bytes)
    storage.clean_staging(store.project_ids())  # what a crash left half-written; before any project loads its data
    # a cluster gateway (mlitb/cluster/) hands in its own registry, whose projects live in project actors
    registry = registry or ProjectRegistry(settings, store)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        registry.start_all()
        yield
        await registry.shutdown()

    app = FastAPI(title="MLitB master", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  responses=ERROR_RESPONSES,
                  description="Machine learning in the browser: projects, models, metrics, data; workers on /ws.")
    app.state.registry = registry
    limits = ConnectionLimits(settings)
    app.state.settings = settings
    app.state.storage = storage
    app.state.closures_dir = settings.data_dir / "closures"  # the zoo; a cluster gateway shares the cluster's
    app.state.project_closure = closure_here  # how POST .../closures builds a closure; a gateway asks its project
    app.state.creation = CreationLimits(settings, store.count_created_by, store.set_creator)

    @app.middleware("http")
    async def isolate(request: Request, call_next):
        response = await call_next(request)
        response.headers.update(ISOLATION_HEADERS)
        return response

    # a bad hyper-parameter is INVALID_HYPER, any other invalid body INVALID_REQUEST
    install_error_handlers(app, lambda loc: ErrorCode.INVALID_HYPER if loc[:1] == ("hyper",) else ErrorCode.INVALID_REQUEST)

    def readable(project_id: int, request: Request) -> ProjectRuntime:
        """A public project, or a private one for its owner, the admin or an invitee."""
        rt = registry.get(project_id)
        auth.require_project(request, rt, auth.READ, "read this private project")
        return rt

    def owned(project_id: int, request: Request, what: str) -> ProjectRuntime:
        rt = registry.get(project_id)
        auth.require_project(request, rt, auth.OWN, what)
        return rt

    @app.get("/api/projects", summary="List projects (private ones only for the admin)")
    async def list_projects(request: Request) -> list[dict]:
        admin = auth.is_admin_request(request)
        return [summary(rt) for rt in registry.projects.values() if admin or not rt.spec.private]

    @app.post("/api/projects", status_code=201, summary="Create a project; returns its owner token once")
    async def create_project(spec: ProjectSpec, request: Request) -> dict:
        if not settings.open_creation:
            auth.require_admin(request, "create projects on this server")
        creator = app.state.creation.admit(request)
        runtime, secrets = registry.create(spec.model_dump())
        app.state.creation.record(creator, runtime.id)
        return {**summary(runtime), **secrets}

    @app.get("/api/projects/{project_id}", summary="Get a project")
    async def get_project(project_id: int, request: Request) -> dict:
        return summary(readable(project_id, request))

    @app.delete("/api/projects/{project_id}", status_code=204, summary="Delete a project (owner or admin)")
    async def delete_project(project_id: int, request: Request) -> Response:
        owned(project_id, request, "delete this project")
        registry.delete(project_id)
        # its uploaded data goes too (a later project may get the same id)
        shutil.rmtree(data_routes.dataset_dir(settings.data_dir, project_id, "train").parent, ignore_errors=True)
        return Response(status_code=204)

    @app.get("/api/projects/{project_id}/model/model.json", summary="Current model (TF.js Layers topology)")
    async def get_model(project_id: int, request: Request) -> Response:
        rt = readable(project_id, request)
        body = json.dumps(model_json(rt.network, rt.spec.name))
        return Response(body, media_type="application/json",
                        headers={"Cache-Control": "no-store", "X-Mlitb-Round": str(rt.round)})

    @app.get(f"/api/projects/{{project_id}}/model/{WEIGHTS_FILE}", summary="Current weights (float32, manifest order)",
             response_class=Response, responses={200: {"content": {"application/octet-stream": {}},
                                                       "description": "float32 little-endian, manifest order"}})
    async def get_weights(project_id: int, request: Request) -> Response:
        rt = readable(project_id, request)  # workers receive these parameters every round anyway
        return Response(rt.params.tobytes(), media_type="application/octet-stream",
                        headers={"Cache-Control": "no-store", "X-Mlitb-Round": str(rt.round)})

    @app.get("/api/projects/{project_id}/metrics", summary="Per-round metrics")
    async def get_metrics(project_id: int, request: Request,
                          since: int = Query(0, ge=0, description="first round to return")) -> list[dict]:
        return [m for m in readable(project_id, request).metrics if m["round"] >= since]

    @app.get("/metrics", summary="Prometheus metrics of every public project (private ones for the admin)",
             response_class=Response, responses={200: {"content": {PROMETHEUS_TYPE: {}}}})
    async def prometheus(request: Request) -> Response:
        admin = auth.is_admin_request(request)
        runtimes = [rt for rt in registry.projects.values() if admin or not rt.spec.private]
        return Response(prometheus_text(runtimes, time.process_time()), media_type=PROMETHEUS_TYPE)

    @app.get("/api/projects/{project_id}/clients", summary="Connected workers")
    async def get_clients(project_id: int, request: Request) -> list[dict]:
        rt = readable(project_id, request)
        return [{"id": c.id, "role": c.role, "backend": c.backend, "latency_ms": round(c.latency_ms, 1),
                 "work_ms": c.work_ms, "work_share": round(c.work_ms / (1000 * rt.hyper.period_s), 3),
                 "margin_ms": round(scheduler.timing_margin_ms(c, 1000 * rt.hyper.period_s, rt.hyper.batch_size), 1),
                 "allocated": c.alloc_size, "last_samples": c.last_samples,
                 "samples_per_s": None if c.rate_sps is None else round(c.rate_sps, 1)}
                for c in rt.clients.values()]

    @app.get("/api/projects/{project_id}/challenge", summary="A proof-of-work challenge for joining as a trainer")
    async def get_challenge(project_id: int, request: Request) -> dict:
        # bound to the asking address; `bits` is what one more trainer from it must show now (0: none needed)
        rt = readable(project_id, request)
        address = request.client.host if request.client else "?"
        return {"challenge": make_challenge(rt.id, address), "bits": rt.addresses.pow_bits(address, rt.trainer_addresses())}

    @app.get("/api/projects/{project_id}/volunteers", summary="Volunteer credit: the leaderboard, most samples first")
    async def get_volunteers(project_id: int, request: Request, limit: int = Query(100, ge=1, le=1000)) -> list[dict]:
        # per volunteer (public id of its key): samples and results accepted, compute seconds, strikes, quarantine
        return readable(project_id, request).credit.board(limit)

    @app.get("/api/projects/{project_id}/data/{split}", summary="Examples [start, start+count) as binary",
             response_class=Response,
             responses={200: {"content": {"application/octet-stream": {}},
                              "description": "labels (count bytes) then images (count*H*W*C bytes), uint8"}})
    async def get_data(project_id: int, split: str, request: Request, start: int = Query(ge=0),
                       count: int = Query(ge=1)) -> Response:
        rt = readable(project_id, request)
        ds = rt.dataset
        check_split(split)
        if ds is None:
            raise MlitbError(ErrorCode.NO_DATA, f"project {project_id} has no data yet")
        return data_routes.range_response(ds, split, start, count, request)

    @app.websocket("/ws")
    async def ws_endpoint(ws: WebSocket):
        await serve_client(ws, registry, limits)

    app.include_router(uploads_router)  # data sets as zips (PUT /api/projects/{id}/data/{split})

    app.include_router(closure_router)  # research closures and the model zoo (docs/closure.md)
    app.include_router(hyper_router)  # live learning rate and period T (PATCH /api/projects/{id}/hyper)
    app.include_router(model_upload_router)  # load saved weights (PUT /api/projects/{id}/model/weights.bin)
    app.include_router(examples_router)  # learn a new class on the fly (POST /api/projects/{id}/examples)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        # Swagger UI from our own static folder: the default page loads it from a CDN
        return get_swagger_ui_html(openapi_url="/openapi.json", title="MLitB master — API",
                                   swagger_js_url="/static/swagger/swagger-ui-bundle.js",
                                   swagger_css_url="/static/swagger/swagger-ui.css",
                                   swagger_favicon_url="/static/swagger/favicon-32x32.png")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        # pages name /static/favicon.svg; this answers the request browsers make by default (and the API docs)
        return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml",
                            headers={"Cache-Control": "max-age=86400"})

    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
