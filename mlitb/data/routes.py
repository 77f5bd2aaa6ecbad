"""HTTP serving of data sets: examples [start, start+count) as binary uint8 (ETag, gzip cached per range), for
the master's data route and the independent data server; where a project's uploaded data sets are stored
(`data_dir/datasets/{id}/{split}`). Uploads are received by mlitb/server/uploads.py.
"""

from __future__ import annotations

import gzip
from collections import OrderedDict
from pathlib import Path

from fastapi import Request
from fastapi.responses import Response

from mlitb.data.dataset import Dataset
from mlitb.data.ingest import load_ingested
from mlitb.errors import ErrorCode, MlitbError, check_split


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
