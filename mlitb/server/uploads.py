"""HTTP route for data uploads: a zip of class folders, streamed to disk, decoded once.

`PUT /api/projects/{id}/data/{train|test}` with `Content-Type: application/zip` and the
owner's (or admin's) token. The body is streamed to a temporary file under a size cap and the
storage quotas (a 2 GB zip never sits in memory), decoded off the event loop, stored atomically
under `data_dir/datasets/{id}/{split}`, and handed to the project, which re-allocates it.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

from fastapi import APIRouter, Request

from mlitb.data.dataset import Dataset
from mlitb.data.ingest import IngestLimits, ingest_zip, load_ingested
from mlitb.data.routes import dataset_dir
from mlitb.errors import ErrorCode, MlitbError, check_split
from mlitb.server import auth
from mlitb.server.bodies import capped_chunks
from mlitb.server.storage import UPLOADS, tree_bytes

ZIP_TYPES = {"application/zip", "application/x-zip-compressed"}
router = APIRouter()


async def _receive_to_file(request: Request, path: Path, cap: int, rx) -> int:
    """Stream the body to `path`; `rx.add` refuses it when the server's quota or the disk watermark is passed."""
    with path.open("wb") as out:
        async for chunk in capped_chunks(request, cap, ErrorCode.UPLOAD_TOO_LARGE, "an upload"):
            rx.add(len(chunk))
            out.write(chunk)
    return rx.size


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
    storage = request.app.state.storage
    final = dataset_dir(settings.data_dir, project_id, split)
    # what the upload replaces: the split's data, and for new training data the examples added on the fly
    replacing = tree_bytes(final) + (storage.examples_bytes(project_id) if split == "train" else 0)
    upload_dir = settings.data_dir / UPLOADS
    upload_dir.mkdir(parents=True, exist_ok=True)
    staging = dataset_dir(settings.data_dir, project_id, f"{split}.new")
    with storage.receiving() as rx, tempfile.NamedTemporaryFile(dir=upload_dir, suffix=".zip") as tmp:
        size = await _receive_to_file(request, Path(tmp.name), settings.max_upload_bytes, rx)

        def reserve(decoded: int) -> None:  # before decoding: the decoded data must fit the quotas
            storage.require(decoded, project_id, replacing, what=f"the decoded data set ({decoded} bytes)")

        report = await asyncio.to_thread(ingest_zip, Path(tmp.name), staging, shape, IngestLimits(), reserve=reserve)
    labels = tuple(report.labels)
    try:
        # the exact bytes stored (staging is under the project's folder, so both quotas see it now)
        await asyncio.to_thread(storage.require, 0, project_id, replacing, what="the decoded data set")
        if len(labels) != runtime.network.num_classes:
            raise MlitbError(ErrorCode.INVALID_NETWORK, f"the data has {len(labels)} classes but the network has "
                             f"{runtime.network.num_classes} outputs")
        if split == "test" and labels != runtime.dataset.labels:
            raise MlitbError(ErrorCode.EMPTY_DATASET, f"test labels {list(labels)} differ from the training labels "
                             f"{list(runtime.dataset.labels)}")
    except MlitbError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
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
