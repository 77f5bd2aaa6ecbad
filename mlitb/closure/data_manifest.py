"""The data part of a research closure (docs/closure.md): what data a run used, by content hash (per split and
per trainer shard), and the examples labelled on the fly that the closure carries itself."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any

import numpy as np

from mlitb.errors import ErrorCode, MlitbError

APPENDED_PART = "data/appended.bin"  # examples labelled on the fly (data.json "appended")
PREPROCESSING = ("images: uint8 row-major (N, H, W, C), fed to the network as float32 x / 255; labels: uint8 "
                 "class index, one-hot over the label map")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@lru_cache(maxsize=8)
def _split_hashes(images: Any, labels: Any) -> dict:
    return {"count": int(len(labels)), "images_sha256": sha256(np.ascontiguousarray(images).tobytes()),
            "labels_sha256": sha256(np.ascontiguousarray(labels).tobytes())}


def split_manifest(split) -> dict:
    """Count and content hashes of one split (uint8 images and labels exactly as served to workers)."""
    return _split_hashes(_Ref(split.images), _Ref(split.labels))  # hashed once per split, not once per save


class _Ref:
    """Hashes by identity, so `lru_cache` remembers a split's hashes without comparing its arrays."""

    def __init__(self, array: np.ndarray):
        self.array = array

    def __hash__(self) -> int:
        return id(self.array)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Ref) and other.array is self.array

    def __len__(self) -> int:
        return len(self.array)

    def __array__(self, dtype=None, copy=None):
        return self.array


def data_manifest(dataset, owner: np.ndarray | None) -> dict | None:
    """Per split and per trainer shard: counts and content hashes; the label map and preprocessing."""
    if dataset is None:
        return None
    shards = []
    if owner is not None:
        for trainer in sorted(set(owner[owner >= 0].tolist())):
            ids = np.flatnonzero(owner == trainer).astype("<u4")
            shards.append({"shard": len(shards), "count": int(len(ids)), "ids_sha256": sha256(ids.tobytes())})
    splits = {"train": split_manifest(dataset.train)}
    if dataset.test is not None:
        splits["test"] = split_manifest(dataset.test)
    out = {"dataset": dataset.name, "labels": list(dataset.labels), "shape": list(dataset.shape),
           "preprocessing": PREPROCESSING, "splits": splits, "shards": shards}
    if dataset.appended:  # examples labelled on the fly: stored in the closure, they are in no package
        classes = dataset.appended_classes
        out["appended"] = {"count": dataset.appended, "part": APPENDED_PART,
                           "new_labels": list(dataset.labels[len(dataset.labels) - classes:]) if classes else []}
    return out


def appended_examples(closure) -> list:
    """The examples labelled on the fly that a closure carries (data/appended.bin), as LabelledExamples."""
    from mlitb.data.examples import LabelledExample

    data = closure.data or {}
    count = int((data.get("appended") or {}).get("count", 0))
    raw, labels, shape = closure.parts.get(APPENDED_PART), data.get("labels", []), data.get("shape", [])
    if not count:
        return []
    pixels = int(np.prod(shape)) if shape else 0
    if raw is None or not pixels or len(raw) != count * (1 + pixels) or max(raw[:count]) >= len(labels):
        raise MlitbError(ErrorCode.CLOSURE_INVALID, f"data.json lists {count} appended examples that {APPENDED_PART} "
                     "does not hold")
    images = np.frombuffer(raw[count:], np.uint8).reshape(count, *shape)
    return [LabelledExample(labels[raw[k]], images[k].copy()) for k in range(count)]


def appended_bytes(dataset) -> bytes:
    """The examples appended to the training split: their labels (one byte each), then their images."""
    n = dataset.appended
    return dataset.train.labels[-n:].tobytes() + dataset.train.images[-n:].tobytes()
