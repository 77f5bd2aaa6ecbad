"""In-memory image-classification data: uint8 images (N, H, W, C) and uint8 labels, per split."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from mlitb.errors import ErrorCode, MlitbError

MAX_RANGE = 10_000  # examples per data request


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # uint8 (N, H, W, C)
    labels: np.ndarray  # uint8 (N,)

    def __post_init__(self):
        if self.images.dtype != np.uint8 or self.labels.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError("images must be uint8 (N, H, W, C) and labels uint8")
        if len(self.images) != len(self.labels):
            raise ValueError("images and labels differ in length")

    def __len__(self) -> int:
        return len(self.labels)

    def encode_range(self, start: int, count: int) -> bytes:
        """Binary body for [start, start+count): labels (count bytes) then images (count*H*W*C)."""
        if count < 1 or count > MAX_RANGE or start < 0 or start + count > len(self):
            raise MlitbError(ErrorCode.BAD_RANGE, f"range [{start}, {start + count}) is not within [0, {len(self)}) "
                             f"or is longer than {MAX_RANGE}")
        return self.labels[start:start + count].tobytes() + self.images[start:start + count].tobytes()


@dataclass(frozen=True)
class Dataset:
    name: str
    labels: tuple[str, ...]  # class names, index = label
    train: Split
    test: Split | None
    # set when examples were appended to `train` (labelled on the fly): the version of the data they
    # were appended to. Appending keeps every example id's content, so a client holding examples of
    # the same base version keeps them and downloads only what is new.
    base_version: str | None = None
    appended: int = 0  # examples appended to `train` since the base version
    appended_classes: int = 0  # labels (the last ones) that only those examples introduced

    @property
    def stable_version(self) -> str:
        return self.base_version or self.version

    @cached_property
    def version(self) -> str:
        """Content hash of every split: clients key their caches by it."""
        h = hashlib.sha256()
        for split in (self.train, self.test):
            if split is not None:
                h.update(split.labels.tobytes())
                h.update(split.images.tobytes())
        return h.hexdigest()[:16]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])  # type: ignore[return-value]
