"""Data sets: in-memory uint8 splits, built-in MNIST, and binary range encoding for clients."""

from mlitb.data.dataset import MAX_RANGE, Dataset, Split
from mlitb.data.mnist import load_mnist

BUILTIN_DATASETS = ("mnist",)

__all__ = ["MAX_RANGE", "Dataset", "Split", "load_mnist", "BUILTIN_DATASETS"]
