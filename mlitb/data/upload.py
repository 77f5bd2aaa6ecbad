"""`mlitb data upload`: stream a zip to a project's data route, showing progress."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx

CHUNK = 1 << 20


def upload_zip(path: Path, server: str, project: int, token: str | None, split: str = "train",
               out=None) -> dict:
    """Upload `path`; raises RuntimeError with the server's message on failure."""
    out = out or sys.stderr  # the stderr of when it runs, not of the import
    if not path.is_file():
        raise RuntimeError(f"{path} is not a file")
    total = path.stat().st_size
    started = time.monotonic()

    def chunks():
        sent = 0
        with path.open("rb") as fh:
            while block := fh.read(CHUNK):
                sent += len(block)
                rate = sent / max(time.monotonic() - started, 1e-6) / 1e6
                print(f"\ruploading {path.name}: {sent / 1e6:8.1f} / {total / 1e6:.1f} MB ({100 * sent / max(total, 1):5.1f}%, "
                      f"{rate:6.1f} MB/s)", end="", file=out, flush=True)
                yield block
        print("\nuploaded; the server is decoding the images…", file=out, flush=True)

    headers = {"Content-Type": "application/zip", "Content-Length": str(total)}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    url = f"{server.rstrip('/')}/api/projects/{project}/data/{split}"
    r = httpx.put(url, content=chunks(), headers=headers, timeout=httpx.Timeout(30, read=3600))
    body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {"message": r.text}
    if r.status_code != 200:
        raise RuntimeError(f"{body.get('code', r.status_code)}: {body.get('message', body)}")
    return body
