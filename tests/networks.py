"""The networks the NumPy verifier's tests share with the parity tests (tests/e2e/test_torch_parity.py), under one name
each: every layer type the spec allows (tests/helpers.py) and the CIFAR-size conv net (tests/e2e/project_run.py)."""

from tests.e2e.project_run import CIFAR_SIZE_NETWORK as CIFAR
from tests.helpers import EVERY_LAYER_NETWORK as EVERY_LAYER

__all__ = ["CIFAR", "EVERY_LAYER"]
