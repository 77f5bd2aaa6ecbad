"""What a native worker is asked to do (`Options`, from `mlitb worker --engine torch`) and what it reports
(`Status`: one line per round, errors newest last)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("mlitb.native")


@dataclass
class Options:
    server: str  # http(s)://host:port of the master
    project: int
    role: str = "trainer"  # or "tracker"
    device: str = "cpu"  # cpu | cuda | auto
    token: str | None = None  # invite (or owner) token of a private project
    batch_size: int | None = None  # None: the project's mini-batch
    cache_dir: Path | None = None  # None: no disk cache
    eval_interval_s: float = 4.0  # a tracker evaluates at most this often (as the browser's)
    seed: int | None = None
    volunteer: str | None = None  # the volunteer key sent in a trainer's JOIN: credit goes to its public id
    slot: int = 0  # this worker's number in its command: the first connection goes to the slot-th least loaded gateway


@dataclass
class Status:
    role: str
    state: str = "connecting"
    backend: str = ""
    client_id: int | None = None
    round: int | None = None
    samples: int | None = None
    samples_per_s: float | None = None
    work_ms: int | None = None
    compute_ms: int | None = None
    loss: float | None = None
    test_error: float | None = None
    allocated: int = 0
    downloaded: int = 0
    kept: int = 0
    from_cache: int = 0
    connections: int = 0
    gateway: str | None = None  # the server or cluster gateway connected (or connecting) to
    errors: list[str] = field(default_factory=list)  # reported problems, newest last (at most 20)

    def report(self, message: str) -> None:
        log.warning("%s: %s", self.role, message)
        self.errors = (self.errors + [message])[-20:]
