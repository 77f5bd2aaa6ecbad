"""`mlitb data-server`: the independent data server of the paper (§3.2), as its own process.

It serves the same binary ranges as the master's embedded route, read-only, from the
master's `--data-dir` (uploaded data sets, and the project list and the examples labelled on
the fly in its SQLite file, which WAL mode lets it read while the master writes). The master, started with `--data-url`,
only allocates ids and tells workers to fetch from here. Responses allow cross-origin use
(CORS, and CORP for cross-origin-isolated pages).
"""

from __future__ import annotations

from fastapi import FastAPI, Query, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response

from mlitb import __version__, auth
from mlitb.config import Settings
from mlitb.data.dataset import Dataset
from mlitb.data.examples import LabelledExample, with_examples
from mlitb.data.mnist import load_mnist
from mlitb.data.routes import dataset_dir, range_response, stored_dataset
from mlitb.errors import ErrorCode, MlitbError, check_split
from mlitb.http_errors import install_error_handlers
from mlitb.store import ProjectStore


def create_data_app(settings: Settings) -> FastAPI:
    store = ProjectStore(settings.data_dir / "mlitb.sqlite3")
    datasets: dict[int, tuple[tuple, Dataset]] = {}  # project id -> (what it was built from, the data set)
    app = FastAPI(title="MLitB data server", version=__version__)
    app.state.requests = 0
    app.state.datasets = datasets
    app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["GET"],
                       allow_headers=["authorization", "if-none-match"], expose_headers=["etag", "x-mlitb-shape"])

    @app.middleware("http")
    async def cross_origin_resource(request: Request, call_next):
        response = await call_next(request)
        response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
        return response

    install_error_handlers(app)

    def dataset_of(project_id: int, request: Request) -> Dataset:
        meta = store.project_meta(project_id)
        if meta is None:
            raise MlitbError(ErrorCode.UNKNOWN_PROJECT, f"no project with id {project_id}")
        spec, owner_hash, invite_hash = meta
        auth.require(auth.token_of(request), auth.READ, "read this private project's data",
                     admin_token=settings.admin_token, owner_hash=owner_hash, invite_hash=invite_hash,
                     private=bool(spec.get("private")))
        # an upload replaces a project's files and an example labelled on the fly is appended to its training
        # split (mlitb/data/examples.py): the cache key follows the files' modification times and the examples
        stamps = tuple((dataset_dir(settings.data_dir, project_id, s) / "meta.json").stat().st_mtime_ns
                       if (dataset_dir(settings.data_dir, project_id, s) / "meta.json").exists() else 0
                       for s in ("train", "test"))
        key = (spec.get("dataset"), stamps, store.examples_stamp(project_id))
        cached = datasets.get(project_id)
        if cached is None or cached[0] != key:
            ds = load_mnist(settings.mnist_dir) if spec.get("dataset") == "mnist" else \
                stored_dataset(settings.data_dir, project_id)
            if ds is None:
                raise MlitbError(ErrorCode.NO_DATA, f"project {project_id} has no data yet")
            # the same appending as the master's (registry._build), so ids, bytes and version agree
            examples = [LabelledExample(label, image) for label, image in store.load_examples(project_id)]
            ds = with_examples(ds, [ex for ex in examples if ex.image.shape == ds.shape])
            ds.version  # noqa: B018 - hashed once here, not in the first range response
            datasets[project_id] = cached = (key, ds)  # one per project: older versions are dropped
        return cached[1]

    @app.get("/api/projects/{project_id}/data/{split}", summary="Examples [start, start+count) as binary")
    async def get_data(project_id: int, split: str, request: Request, start: int = Query(ge=0),
                       count: int = Query(ge=1)) -> Response:
        app.state.requests += 1
        check_split(split)
        return range_response(dataset_of(project_id, request), split, start, count, request)

    return app
