"""Data service figures: zip ingest (images/s) and range serving (MB/s), beside a plain read of
the same bytes from a file in the same run (the baseline a data server cannot beat).

    .venv/bin/python bench/data_service.py [--images 6000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlitb.config import Settings  # noqa: E402
from mlitb.data import load_mnist  # noqa: E402
from mlitb.data.ingest import ingest_zip  # noqa: E402
from mlitb.model import PAPER_NETWORK  # noqa: E402
from mlitb.server.run import BackgroundServer  # noqa: E402


def build_zip(path: Path, n: int) -> None:
    mnist = load_mnist()
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(n):
            out, fmt = io.BytesIO(), ("PNG", "JPEG")[i % 2]
            Image.fromarray(mnist.train.images[i, :, :, 0]).save(out, fmt)
            zf.writestr(f"mnist/{mnist.train.labels[i]}/{i}.{fmt.lower()}", out.getvalue())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=6000, help="images in the ingested zip")
    ap.add_argument("--rounds", type=int, default=5, help="times the full training set is served")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        build_zip(tmp / "d.zip", args.images)
        t = time.perf_counter()
        ingest_zip(tmp / "d.zip", tmp / "out", (28, 28, 1))
        ingest_s = time.perf_counter() - t
        print(f"ingest: {args.images} PNG/JPEG images in {ingest_s:.2f} s = {args.images / ingest_s:,.0f} images/s")

        chunk, total = 2000, 60_000
        with BackgroundServer(Settings(port=0, data_dir=tmp / "srv")) as srv:
            pid = httpx.post(f"{srv.url}/api/projects", json={"name": "b", "dataset": "mnist",
                                                              "network": PAPER_NETWORK}).json()["id"]
            url = f"{srv.url}/api/projects/{pid}/data/train"
            results = {}
            for encoding in ("identity", "gzip"):
                with httpx.Client(headers={"Accept-Encoding": encoding}) as client:
                    client.get(url, params={"start": 0, "count": chunk})  # warm-up (the version hash)
                    t, served, wire = time.perf_counter(), 0, 0
                    for _ in range(args.rounds):
                        for start in range(0, total, chunk):
                            r = client.get(url, params={"start": start, "count": chunk})
                            served += len(r.content)
                            wire += int(r.headers["content-length"])
                    results[encoding] = (served, wire, time.perf_counter() - t)
        served = results["identity"][0]
        blob = tmp / "blob.bin"
        blob.write_bytes(os.urandom(served // args.rounds))
        t, read = time.perf_counter(), 0
        for _ in range(args.rounds):
            with blob.open("rb") as fh:
                while block := fh.read(chunk * 785):
                    read += len(block)
        read_s = time.perf_counter() - t
    read_mb = read / read_s / 1e6
    for encoding, (decoded, wire, secs) in results.items():
        print(f"serving ({encoding}): {decoded / 1e6:.0f} MB of examples in {chunk}-example ranges, {wire / 1e6:.0f} MB "
              f"on the wire: {decoded / secs / 1e6:,.0f} MB/s decoded")
    print(f"plain file read of the same bytes: {read_mb:,.0f} MB/s")
    for encoding, (decoded, wire, secs) in results.items():
        print(f"serving ({encoding}) / plain read: {decoded / secs / 1e6 / read_mb:.3f}; wire bytes / raw: {wire / decoded:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
