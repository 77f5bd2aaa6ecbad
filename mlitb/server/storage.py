"""What the server stores in its data folder: storage quotas, the free-disk watermark, and the
clean-up at start of the staging leftovers that a crash (kill -9 during an upload) leaves behind.

Layout of `data_dir` this module knows: `uploads/` holds only uploads in flight (zips being received);
`datasets/{id}/{split}` a project's decoded data, staged as `{split}.new` (and ingest's `.partial`);
`closures/{cid}.zip` with its `{cid}.json` summary, written zip first, summary last, each renamed into
place from a `.partial` file; the SQLite database (with added examples) at the top.
"""

from __future__ import annotations

import logging
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from mlitb.config import Settings
from mlitb.errors import ErrorCode, MlitbError

log = logging.getLogger("mlitb.storage")
UPLOADS = "uploads"
STAGING_SUFFIXES = (".new", ".partial")
DISK_CHECK_BYTES = 1 << 20  # while receiving, the free disk is measured again after every MiB


def tree_bytes(path: Path, skip: Path | None = None) -> int:
    """Bytes of the regular files under `path` (links not followed), leaving out the folder `skip`."""
    total = 0
    for root, dirs, files in os.walk(path):
        if skip is not None:
            dirs[:] = [d for d in dirs if Path(root, d) != skip]
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except FileNotFoundError:  # replaced while we walked
                continue
            total += st.st_size
    return total


def _gib(n: int) -> str:
    return f"{n / 1024**3:.2f} GiB" if n >= 1024**3 else f"{n / 1024**2:.1f} MiB"


class Storage:
    """The quotas of one server. `require` refuses (MlitbError) what would pass a limit; `receiving` counts
    an upload's bytes while they arrive, so concurrent uploads cannot each take the same free room."""

    def __init__(self, settings: Settings, examples_bytes=lambda project_id: 0, disk_free=None):
        self.settings = settings
        self.data_dir = settings.data_dir
        self.examples_bytes = examples_bytes  # project id -> bytes of its examples added on the fly (in SQLite)
        self.disk_free = disk_free or (lambda path: shutil.disk_usage(path).free)
        self.in_flight = 0  # bytes of uploads being received, in uploads/
        self.also_stores_in: list[Path] = []  # folders outside data_dir this server writes (a cluster gateway's zoo)

    def server_used(self) -> int:
        elsewhere = sum(tree_bytes(folder) for folder in self.also_stores_in)
        return tree_bytes(self.data_dir, skip=self.data_dir / UPLOADS) + elsewhere + self.in_flight

    def project_used(self, project_id: int) -> int:
        return tree_bytes(self.data_dir / "datasets" / str(project_id)) + self.examples_bytes(project_id)

    def free_disk(self) -> int:
        return self.disk_free(self.data_dir)

    def require(self, adding: int, project_id: int | None = None, replacing: int = 0, what: str = "this upload") -> None:
        """Refuse storing `adding` more bytes (while `replacing` bytes of the project's are freed) if the disk
        would fall below the watermark, or the server's or the project's quota would be passed."""
        s = self.settings
        free = self.free_disk()
        if free - adding + replacing < s.min_free_disk_bytes:
            raise MlitbError(ErrorCode.DISK_LOW, f"{what} is refused: the server's disk has {_gib(free)} free and "
                             f"keeps at least {_gib(s.min_free_disk_bytes)} free")
        used = self.server_used()
        if used + adding - replacing > s.max_server_bytes:
            raise MlitbError(ErrorCode.SERVER_QUOTA_EXCEEDED, f"{what} is refused: the server stores {_gib(used)} "
                             f"of at most {_gib(s.max_server_bytes)}")
        if project_id is not None:
            mine = self.project_used(project_id)
            if mine + adding - replacing > s.max_project_bytes:
                raise MlitbError(ErrorCode.PROJECT_QUOTA_EXCEEDED, f"{what} would make project {project_id} store "
                                 f"{_gib(mine + adding - replacing)}; at most {_gib(s.max_project_bytes)}")
    @contextmanager
    def receiving(self, what: str = "this upload"):
        """A counter for an upload's bytes as they arrive: `add(n)` refuses the upload as soon as the server's
        quota or the disk watermark is passed. The bytes stop counting when the block ends (the file is gone)."""
        self.require(0, what=what)
        rx = _Receiving(self, self.server_used() - self.in_flight, what)
        try:
            yield rx
        finally:
            self.in_flight -= rx.size


    def clean_staging(self, project_ids: set[int]) -> list[Path]:
        """Delete what an interrupted upload, ingest, closure save or project deletion left behind (call it
        before anything runs), and return it: everything in uploads/, staged data set folders, the data of
        projects that no longer exist (`project_ids`: those that do), closure parts without their summary."""
        removed: list[Path] = []

        def remove(path: Path) -> None:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)

        uploads = self.data_dir / UPLOADS
        if uploads.is_dir():
            for p in uploads.iterdir():
                remove(p)
        for project in (self.data_dir / "datasets").glob("*"):
            if not (project.name.isdigit() and int(project.name) in project_ids):
                remove(project)
                continue
            for p in project.glob("*"):
                if p.name.endswith(STAGING_SUFFIXES):
                    remove(p)
        closures = self.data_dir / "closures"
        for p in closures.glob("*.partial"):
            remove(p)
        for p in closures.glob("*.zip"):
            if not p.with_suffix(".json").is_file():  # the summary is written last: without it, never finished
                remove(p)
        for p in removed:
            log.warning("removed a leftover of an interrupted upload or deletion: %s", p)
        return removed


class _Receiving:
    def __init__(self, storage: Storage, base: int, what: str):
        self.storage, self.base, self.what = storage, base, what
        self.size = 0
        self._next_disk_check = DISK_CHECK_BYTES

    def add(self, n: int) -> None:
        s, limits = self.storage, self.storage.settings
        self.size += n
        s.in_flight += n
        if self.base + s.in_flight > limits.max_server_bytes:
            raise MlitbError(ErrorCode.SERVER_QUOTA_EXCEEDED, f"{self.what} is refused: it would make the server "
                             f"store more than {_gib(limits.max_server_bytes)}")
        if self.size >= self._next_disk_check:
            self._next_disk_check = self.size + DISK_CHECK_BYTES
            free = s.free_disk()
            if free < limits.min_free_disk_bytes:
                raise MlitbError(ErrorCode.DISK_LOW, f"{self.what} is refused: the server's disk has {_gib(free)} "
                                 f"free and keeps at least {_gib(limits.min_free_disk_bytes)} free")
