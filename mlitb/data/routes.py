"""HTTP route for data uploads: a zip of class folders, streamed to disk, decoded once.

`PUT /api/projects/{id}/data/{train|test}` with `Content-Type: application/zip` and the
owner's (or admin's) token. The body is streamed to a temporary file under a size cap (a
2 GB zip never sits in memory), decoded off the event loop, stored atomically under
`data_dir/datasets/{id}/{split}`, and handed to the project, which re-allocates it.
"""

from __future__ import annotations

import asyncio
import gzip
import shutil
import tempfile
from collections import OrderedDict
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response

from mlitb.data.dataset import Dataset
from mlitb.data.ingest import IngestLimits, ingest_zip, load_ingested
from mlitb.errors import ErrorCode, MlitbError, check_split
from mlitb.server import auth
from mlitb.server.bodies import capped_chunks

ZIP_TYPES = {"application/zip", "application/x-zip-compressed"}
router = APIRouter()


def dataset_dir(data_dir: Path, project_id: int, split: str) -> Path:
    return data_dir / "datasets" / str(project_id) / split


def stored_dataset(data_dir: Path, project_id: int) -> Dataset | None:
    """The uploaded data of a project, if any (used when a server restarts)."""
    train_dir = dataset_dir(data_dir, project_id, "train")
    if not (train_dir / "meta.json").is_file():
        return None
    train, meta = load_ingested(train_dir)
    test_dir = dataset_dir(data_dir, project_id, "test")
    test = load_ingested(test_dir)[0] if (test_dir / "meta.json").is_file() else None
    return Dataset("uploaded", tuple(meta["labels"]), train, test)


class CompressedRanges:
    """gzip bodies of served ranges, computed once per (data version, split, range) and kept
    while they fit in `budget` bytes: ranges are immutable, so every client after the first
    gets the compressed bytes for free. A range that does not shrink by 10% is sent as is."""

    def __init__(self, budget: int = 64 * 1024**2):
        self.budget, self.used = budget, 0
        self.bodies: OrderedDict[tuple, bytes | None] = OrderedDict()

    def get(self, key: tuple, raw: bytes) -> bytes | None:
        if key in self.bodies:
            self.bodies.move_to_end(key)
            return self.bodies[key]
        packed = gzip.compress(raw, compresslevel=1, mtime=0)
        body = packed if len(packed) < 0.9 * len(raw) else None
        self.bodies[key] = body
        self.used += len(body or b"")
        while self.used > self.budget and self.bodies:
            self.used -= len(self.bodies.popitem(last=False)[1] or b"")
        return body


COMPRESSED = CompressedRanges()


def range_response(ds: Dataset, split: str, start: int, count: int, request: Request) -> Response:
    """Examples [start, start+count) as labels then images, with a content-versioned ETag,
    gzip-compressed for clients that accept it when that pays."""
    part = {"train": ds.train, "test": ds.test}[check_split(split)]
    if part is None:
        raise MlitbError(ErrorCode.NO_DATA, f"the project has no '{split}' data")
    etag = f'"{ds.version}-{split}-{start}-{count}"'
    headers = {"Cache-Control": "public, max-age=31536000, immutable", "ETag": etag, "Vary": "Accept-Encoding",
               "X-Mlitb-Shape": ",".join(map(str, ds.shape))}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    raw = part.encode_range(start, count)
    if "gzip" in request.headers.get("accept-encoding", ""):
        packed = COMPRESSED.get((ds.version, split, start, count), raw)
        if packed is not None:
            return Response(packed, media_type="application/octet-stream", headers={**headers, "Content-Encoding": "gzip"})
    return Response(raw, media_type="application/octet-stream", headers=headers)


async def _receive_to_file(request: Request, path: Path, cap: int) -> int:
    size = 0
    with path.open("wb") as out:
        async for chunk in capped_chunks(request, cap, ErrorCode.UPLOAD_TOO_LARGE, "an upload"):
            size += len(chunk)
            out.write(chunk)
    return size


@router.put("/api/projects/{project_id}/data/{split}", summary="Upload a zip of class folders (owner or admin)",
            openapi_extra={"requestBody": {"required": True, "content": {"application/zip": {
                "schema": {"type": "string", "format": "binary"}}}}})
async def upload_data(project_id: int, split: str, request: Request) -> dict:
    registry, settings = request.app.state.registry, request.app.state.settings
    runtime = registry.get(project_id)
    auth.require_owner(runtime.owner_hash, request, settings.admin_token, "upload data to this project")
    check_split(split)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in ZIP_TYPES:
        raise MlitbError(ErrorCode.WRONG_CONTENT_TYPE, f"send the zip as application/zip, not '{ctype or 'nothing'}'")
    await runtime.settled()  # examples labelled on the fly may be growing the network until this round ends
    shape = tuple(runtime.network.input_shape)
    if len(shape) != 3:
        raise MlitbError(ErrorCode.INVALID_NETWORK, "image uploads need a network whose input is [h, w, c]")
    if split == "test" and runtime.dataset is None:
        raise MlitbError(ErrorCode.NO_DATA, "upload the training data first; the test set must use its labels")
    upload_dir = settings.data_dir / "uploads"
    upload_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=upload_dir, suffix=".zip") as tmp:
        size = await _receive_to_file(request, Path(tmp.name), settings.max_upload_bytes)
        staging = dataset_dir(settings.data_dir, project_id, f"{split}.new")
        report = await asyncio.to_thread(ingest_zip, Path(tmp.name), staging, shape, IngestLimits())
    labels = tuple(report.labels)
    try:
        if len(labels) != runtime.network.num_classes:
            raise MlitbError(ErrorCode.INVALID_NETWORK, f"the data has {len(labels)} classes but the network has "
                             f"{runtime.network.num_classes} outputs")
        if split == "test" and labels != runtime.dataset.labels:
            raise MlitbError(ErrorCode.EMPTY_DATASET, f"test labels {list(labels)} differ from the training labels "
                             f"{list(runtime.dataset.labels)}")
    except MlitbError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    final = dataset_dir(settings.data_dir, project_id, split)
    if final.exists():
        shutil.rmtree(final)
    staging.rename(final)
    part = load_ingested(final)[0]
    if split == "train":
        if registry.store is not None:  # examples labelled on the fly belonged to the replaced data
            registry.store.clear_examples(project_id)
        runtime.attach_data(Dataset("uploaded", labels, part, None))
    else:
        runtime.attach_data(Dataset(runtime.dataset.name, labels, runtime.dataset.train, part))
    return {"split": split, "bytes": size, **report.__dict__}
