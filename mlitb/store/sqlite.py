"""SQLite persistence of projects: definition, latest checkpoint, and the metrics history.

A checkpoint (parameters, optimizer state, round) is written in one transaction, so a
crash leaves either the previous checkpoint or the new one, never a mix. Metrics rows are
appended as they are checkpointed. WAL mode keeps readers and the writer apart.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (
  id INTEGER PRIMARY KEY,
  spec TEXT NOT NULL,
  created REAL NOT NULL,
  owner_hash TEXT,
  invite_hash TEXT,
  creator TEXT
);
CREATE TABLE IF NOT EXISTS checkpoints (
  project_id INTEGER PRIMARY KEY REFERENCES projects(id) ON DELETE CASCADE,
  round INTEGER NOT NULL,
  params BLOB NOT NULL,
  history BLOB NOT NULL,
  allocation BLOB,
  saved REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS metrics (
  project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
  round INTEGER NOT NULL,
  record TEXT NOT NULL,
  PRIMARY KEY (project_id, round)
);
CREATE TABLE IF NOT EXISTS credit (
  project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
  volunteer TEXT NOT NULL,
  samples INTEGER NOT NULL,
  results INTEGER NOT NULL,
  compute_ms INTEGER NOT NULL,
  strikes INTEGER NOT NULL,
  quarantined INTEGER NOT NULL,
  first_seen REAL NOT NULL,
  last_seen REAL NOT NULL,
  PRIMARY KEY (project_id, volunteer)
);
CREATE TABLE IF NOT EXISTS examples (
  project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
  seq INTEGER NOT NULL,
  label TEXT NOT NULL,
  shape TEXT NOT NULL,
  image BLOB NOT NULL,
  added REAL NOT NULL,
  PRIMARY KEY (project_id, seq)
);
"""


@dataclass
class StoredProject:
    id: int
    spec: dict
    round: int
    params: np.ndarray | None
    history: np.ndarray | None
    metrics: list[dict]
    owner_hash: str | None = None
    invite_hash: str | None = None


class ProjectStore:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()  # one connection, used from the loop and worker threads
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(projects)")}
        if "creator" not in columns:  # a database from before per-address creation limits
            self._db.execute("ALTER TABLE projects ADD COLUMN creator TEXT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add_project(self, project_id: int, spec: dict, created: float, owner_hash: str | None = None,
                    invite_hash: str | None = None) -> None:
        with self._lock:
            self._db.execute("INSERT INTO projects (id, spec, created, owner_hash, invite_hash) VALUES (?, ?, ?, ?, ?)",
                             (project_id, json.dumps(spec), created, owner_hash, invite_hash))

    def project_ids(self) -> set[int]:
        with self._lock:
            return {pid for (pid,) in self._db.execute("SELECT id FROM projects")}

    def set_creator(self, project_id: int, creator: str) -> None:
        """Remember which address created a project (per-address creation limits)."""
        with self._lock:
            self._db.execute("UPDATE projects SET creator = ? WHERE id = ?", (creator, project_id))

    def count_created_by(self, creator: str) -> int:
        """Projects created by this address that still exist."""
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM projects WHERE creator = ?", (creator,)).fetchone()[0]

    def examples_bytes(self, project_id: int) -> int:
        """Bytes of the images added to a project on the fly."""
        with self._lock:
            return self._db.execute("SELECT COALESCE(SUM(LENGTH(image)), 0) FROM examples WHERE project_id = ?",
                                    (project_id,)).fetchone()[0]

    def update_spec(self, project_id: int, spec: dict) -> None:
        """Replace a project's stored spec (live hyper-parameter changes)."""
        with self._lock:
            self._db.execute("UPDATE projects SET spec = ? WHERE id = ?", (json.dumps(spec), project_id))

    def add_example(self, project_id: int, label: str, image: np.ndarray, spec: dict, added: float) -> int:
        """Store one labelled example (uint8 H x W x C) and the project's spec in one transaction (a new
        class grows the network: the two must never disagree). Returns the example's sequence number."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                (last,) = self._db.execute("SELECT COALESCE(MAX(seq), -1) FROM examples WHERE project_id = ?",
                                           (project_id,)).fetchone()
                self._db.execute("INSERT INTO examples (project_id, seq, label, shape, image, added) VALUES (?, ?, ?, ?, ?, ?)",
                                 (project_id, last + 1, label, json.dumps(list(image.shape)),
                                  np.ascontiguousarray(image, dtype=np.uint8).tobytes(), added))
                self._db.execute("UPDATE projects SET spec = ? WHERE id = ?", (json.dumps(spec), project_id))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return last + 1

    def load_examples(self, project_id: int) -> list[tuple[str, np.ndarray]]:
        """(label, uint8 image) of every example added to a project, in the order they were added."""
        with self._lock:
            rows = self._db.execute("SELECT label, shape, image FROM examples WHERE project_id = ? ORDER BY seq",
                                    (project_id,)).fetchall()
        return [(label, np.frombuffer(image, np.uint8).reshape(json.loads(shape)).copy()) for label, shape, image in rows]

    def examples_stamp(self, project_id: int) -> tuple[int, int]:
        """(count, newest sequence number) of a project's added examples: changes whenever one is added."""
        with self._lock:
            row = self._db.execute("SELECT COUNT(*), COALESCE(MAX(seq), -1) FROM examples WHERE project_id = ?",
                                   (project_id,)).fetchone()
        return int(row[0]), int(row[1])

    def clear_examples(self, project_id: int) -> None:
        """Forget a project's added examples (its training data was replaced by an upload)."""
        with self._lock:
            self._db.execute("DELETE FROM examples WHERE project_id = ?", (project_id,))

    def delete_project(self, project_id: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM projects WHERE id = ?", (project_id,))

    def save_checkpoint(self, project_id: int, round: int, params: np.ndarray, history: np.ndarray,
                        new_metrics: list[dict], saved: float, allocation: np.ndarray | None = None) -> None:
        """Parameters, optimizer state, round and new metrics rows, atomically."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO checkpoints (project_id, round, params, history, allocation, saved) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(project_id) DO UPDATE SET round=excluded.round, "
                    "params=excluded.params, history=excluded.history, allocation=excluded.allocation, "
                    "saved=excluded.saved",
                    (project_id, round, params.astype("<f4").tobytes(), history.astype("<f4").tobytes(),
                     None if allocation is None else allocation.astype("<i8").tobytes(), saved))
                self._db.executemany("INSERT OR REPLACE INTO metrics (project_id, round, record) VALUES (?, ?, ?)",
                                     [(project_id, m["round"], json.dumps(m)) for m in new_metrics])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def project_meta(self, project_id: int) -> tuple[dict, str | None, str | None] | None:
        """(spec, owner hash, invite hash) of one project, without its checkpoint."""
        with self._lock:
            row = self._db.execute("SELECT spec, owner_hash, invite_hash FROM projects WHERE id = ?",
                                   (project_id,)).fetchone()
        return None if row is None else (json.loads(row[0]), row[1], row[2])

    def save_credit(self, project_id: int, rows: list) -> None:
        """Upsert volunteer credit rows (mlitb.trust.credit.VolunteerCredit) in one transaction."""
        if not rows:
            return
        values = [(project_id, r.volunteer, r.samples, r.results, r.compute_ms, r.strikes, int(r.quarantined),
                   r.first_seen, r.last_seen) for r in rows]
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany("INSERT OR REPLACE INTO credit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", values)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def load_credit(self, project_id: int) -> list[tuple]:
        """(volunteer, samples, results, compute_ms, strikes, quarantined, first_seen, last_seen) rows."""
        with self._lock:
            return self._db.execute("SELECT volunteer, samples, results, compute_ms, strikes, quarantined, first_seen, "
                                    "last_seen FROM credit WHERE project_id = ?", (project_id,)).fetchall()

    def load_all(self) -> list[StoredProject]:
        with self._lock:
            rows = self._db.execute("SELECT id, spec, owner_hash, invite_hash FROM projects ORDER BY id").fetchall()
            out = []
            for pid, spec, owner_hash, invite_hash in rows:
                ck = self._db.execute("SELECT round, params, history FROM checkpoints WHERE project_id = ?",
                                      (pid,)).fetchone()
                metrics = [json.loads(r) for (r,) in self._db.execute(
                    "SELECT record FROM metrics WHERE project_id = ? ORDER BY round", (pid,))]
                out.append(StoredProject(
                    pid, json.loads(spec), ck[0] if ck else 0,
                    np.frombuffer(ck[1], "<f4").copy() if ck else None,
                    np.frombuffer(ck[2], "<f4").copy() if ck else None, metrics, owner_hash, invite_hash))
            return out
