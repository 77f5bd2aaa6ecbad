"""Labelled examples added one at a time (MLitB §3.6): a picture and its label join the training data.

They are appended to the end of the training split, so every existing example keeps its id and
content (clients keep what they hold: `Dataset.base_version`). A label the data set does not
know becomes a new class, numbered after the existing ones.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import numpy as np

from mlitb.data.dataset import Dataset, Split
from mlitb.errors import ErrorCode, MlitbError

MAX_LABEL_CHARS = 64


@dataclass(frozen=True)
class LabelledExample:
    label: str
    image: np.ndarray  # uint8 (H, W, C), the project's input shape


def clean_label(raw: str) -> str:
    """The label as stored: trimmed, 1..64 printable characters, no slashes (labels name folders too)."""
    label = unicodedata.normalize("NFC", raw or "").strip()
    if not 1 <= len(label) <= MAX_LABEL_CHARS:
        raise MlitbError(ErrorCode.INVALID_REQUEST, f"a label has 1 to {MAX_LABEL_CHARS} characters, got {len(label)}")
    if any(unicodedata.category(ch).startswith("C") for ch in label) or "/" in label or "\\" in label:
        raise MlitbError(ErrorCode.INVALID_REQUEST, "a label may not hold control characters or slashes")
    return label


def new_labels(labels: tuple[str, ...], examples: list[LabelledExample]) -> tuple[str, ...]:
    """`labels` followed by each label of `examples` it lacks, in order of first appearance."""
    out = list(labels)
    for ex in examples:
        if ex.label not in out:
            out.append(ex.label)
    return tuple(out)


def with_examples(base: Dataset, examples: list[LabelledExample]) -> Dataset:
    """`base` with `examples` appended to its training split (new labels become new classes)."""
    if not examples:
        return base
    labels = new_labels(base.labels, examples)
    index = {label: i for i, label in enumerate(labels)}
    images = np.stack([ex.image for ex in examples])
    if images.shape[1:] != base.shape:
        raise ValueError(f"examples of shape {list(images.shape[1:])}; the data set's is {list(base.shape)}")
    targets = np.array([index[ex.label] for ex in examples], dtype=np.uint8)
    train = Split(np.concatenate([base.train.images, images]), np.concatenate([base.train.labels, targets]))
    return Dataset(base.name, labels, train, base.test, base_version=base.stable_version,
                   appended=base.appended + len(examples),
                   appended_classes=base.appended_classes + len(labels) - len(base.labels))
