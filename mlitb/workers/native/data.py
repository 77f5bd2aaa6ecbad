"""Examples a native worker holds, with the browser trainer's rules (web/src/worker/trainer.ts, cache.ts).

Allocated ids are fetched over HTTP in runs of at most 2,000 (`GET {train_url}?start=S&count=N`: N label
bytes, then N images), checked to be exactly the size asked for, and cached on disk under the data set's
content version, so a restarted worker downloads nothing twice. When the allocation changes, the
examples still owned are kept (ids keep their content while the data's `base_version` stays the same)
and only the new ones are fetched; training goes on over what has arrived.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

CHUNK = 2000  # examples per request, as the browser
MAX_REQUEST = 10_000  # the server's cap per request


def id_runs(ids: np.ndarray, max_len: int = MAX_REQUEST) -> list[tuple[int, int]]:
    """Sorted ids -> maximal runs (start, count) of consecutive ids, each at most `max_len` long."""
    runs: list[tuple[int, int]] = []
    i, n = 0, len(ids)
    while i < n:
        j = i + 1
        while j < n and ids[j] == ids[j - 1] + 1 and j - i < max_len:
            j += 1
        runs.append((int(ids[i]), j - i))
        i = j
    return runs


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlitb" / "examples"


class RangeFetcher:
    """`fetch(url, start, count)` -> (labels, images, from_cache): one range of a split, cached on disk by version."""

    def __init__(self, server: str, token: str | None, cache_dir: Path | None):
        self.server = server.rstrip("/")
        self.cache_dir = cache_dir
        self.http = httpx.AsyncClient(base_url=self.server, timeout=60,
                                      headers={"Authorization": f"Bearer {token}"} if token else {})

    async def fetch(self, url: str, start: int, count: int, shape: tuple[int, ...],
                    version: str | None) -> tuple[np.ndarray, np.ndarray, bool]:
        pixels = int(np.prod(shape))
        want = count * (1 + pixels)
        path = self._path(version, url, start, count)
        if path is not None and path.is_file() and path.stat().st_size == want:
            body, hit = path.read_bytes(), True
        else:
            body, hit = await self._get(url, start, count, want), False
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_bytes(body)
                tmp.replace(path)  # atomic: a crash never leaves half a range behind
        buf = np.frombuffer(body, np.uint8)
        return buf[:count].copy(), buf[count:].reshape(count, *shape).copy(), hit

    async def _get(self, url: str, start: int, count: int, want: int) -> bytes:
        async with self.http.stream("GET", url, params={"start": start, "count": count}) as res:
            if res.status_code != 200:
                raise RuntimeError(f"data request failed: {res.status_code} {(await res.aread())[:300]!r}")
            body = bytearray()
            async for chunk in res.aiter_bytes():
                body += chunk
                if len(body) > want:  # never buffer more than the range can be
                    raise RuntimeError(f"data response is longer than the {want} bytes asked for")
        if len(body) != want:
            raise RuntimeError(f"data response has {len(body)} bytes, expected {want}")
        return bytes(body)

    def _path(self, version: str | None, url: str, start: int, count: int) -> Path | None:
        if self.cache_dir is None or not version:
            return None
        key = hashlib.sha256(f"{version}|{url.rsplit('/', 1)[-1]}|{start}|{count}".encode()).hexdigest()
        return self.cache_dir / key[:2] / f"{key}.bin"

    async def aclose(self) -> None:
        await self.http.aclose()


@dataclass(frozen=True)
class Held:
    """The examples a trainer holds: ids, and their images and labels in the same order."""

    base_version: str
    ids: np.ndarray  # uint32
    images: np.ndarray  # uint8 [n, *shape]
    labels: np.ndarray  # uint8 [n]

    @property
    def count(self) -> int:
        return len(self.ids)

    def position_of(self) -> dict[int, int]:
        return {int(i): k for k, i in enumerate(self.ids)}


async def fill(fetcher: RangeFetcher, old: Held | None, wanted: np.ndarray, base_version: str, version: str,
               url: str, shape: tuple[int, ...]):
    """Async generator of ever fuller `Held`s for the allocation `wanted`: first what `old` holds of it
    (kept when the base version is the same), then each fetched run of at most CHUNK ids. Each yield is
    (held, kept, from_cache); the arrays are views of one buffer sized for the whole allocation."""
    wanted = np.sort(np.asarray(wanted, np.uint32))
    images = np.empty((len(wanted), *shape), np.uint8)
    labels = np.empty(len(wanted), np.uint8)
    ids = np.empty(len(wanted), np.uint32)
    n = 0
    missing = wanted
    if old is not None and old.base_version == base_version and old.count:
        have = np.isin(wanted, old.ids)
        pos = old.position_of()
        rows = np.fromiter((pos[int(i)] for i in wanted[have]), np.int64, int(have.sum()))
        n = len(rows)
        images[:n], labels[:n], ids[:n] = old.images[rows], old.labels[rows], wanted[have]
        missing = wanted[~have]
    kept, from_cache = n, 0
    yield Held(base_version, ids[:n], images[:n], labels[:n]), kept, from_cache
    for start, count in id_runs(missing, CHUNK):
        lab, img, hit = await fetcher.fetch(url, start, count, shape, version)
        images[n:n + count], labels[n:n + count] = img, lab
        ids[n:n + count] = np.arange(start, start + count, dtype=np.uint32)
        n += count
        from_cache += count if hit else 0
        yield Held(base_version, ids[:n], images[:n], labels[:n]), kept, from_cache
