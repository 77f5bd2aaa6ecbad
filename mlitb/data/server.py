"""`mlitb data-server`: the independent data server of the paper (§3.2), as its own process.

It serves the same binary ranges as the master's embedded route, read-only, from the
master's `--data-dir` (uploaded data sets, and the project list in its SQLite file, which
WAL mode lets it read while the master writes). The master, started with `--data-url`,
only allocates ids and tells workers to fetch from here. Responses allow cross-origin use
(CORS, and CORP for cross-origin-isolated pages).
"""

from __future__ import annotations

from fastapi import FastAPI, Query, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response

from mlitb import __version__, auth
from mlitb.config import Settings
from mlitb.data.dataset import Dataset
from mlitb.data.mnist import load_mnist
from mlitb.data.routes import dataset_dir, range_response, stored_dataset
from mlitb.errors import ErrorCode, MlitbError
from mlitb.store import ProjectStore


def create_data_app(settings: Settings) -> FastAPI:
    store = ProjectStore(settings.data_dir / "mlitb.sqlite3")
    datasets: dict[tuple, Dataset] = {}
    app = FastAPI(title="MLitB data server", version=__version__)
    app.state.requests = 0
    app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["GET"],
                       allow_headers=["authorization", "if-none-match"], expose_headers=["etag", "x-mlitb-shape"])

    @app.middleware("http")
    async def cross_origin_resource(request: Request, call_next):
        response = await call_next(request)
        response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
        return response

    @app.exception_handler(MlitbError)
    async def mlitb_error(_: Request, err: MlitbError):
        return JSONResponse(err.to_json(), status_code=err.code.http_status)

    def dataset_of(project_id: int, request: Request) -> Dataset:
        meta = store.project_meta(project_id)
        if meta is None:
            raise MlitbError(ErrorCode.UNKNOWN_PROJECT, f"no project with id {project_id}")
        spec, owner_hash, invite_hash = meta
        auth.require(auth.token_of(request), auth.READ, "read this private project's data",
                     admin_token=settings.admin_token, owner_hash=owner_hash, invite_hash=invite_hash,
                     private=bool(spec.get("private")))
        # an upload replaces a project's files: the cache key follows their modification times
        stamps = tuple((dataset_dir(settings.data_dir, project_id, s) / "meta.json").stat().st_mtime_ns
                       if (dataset_dir(settings.data_dir, project_id, s) / "meta.json").exists() else 0
                       for s in ("train", "test"))
        key = (project_id, spec.get("dataset"), stamps)
        if key not in datasets:
            ds = load_mnist(settings.mnist_dir) if spec.get("dataset") == "mnist" else \
                stored_dataset(settings.data_dir, project_id)
            if ds is None:
                raise MlitbError(ErrorCode.NO_DATA, f"project {project_id} has no data yet")
            datasets[key] = ds
        return datasets[key]

    @app.get("/api/projects/{project_id}/data/{split}", summary="Examples [start, start+count) as binary")
    async def get_data(project_id: int, split: str, request: Request, start: int = Query(ge=0),
                       count: int = Query(ge=1)) -> Response:
        app.state.requests += 1
        return range_response(dataset_of(project_id, request), split, start, count, request)

    return app
