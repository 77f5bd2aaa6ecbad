"""Payload kind 0, dense float32: the P little-endian float32 values themselves (no header, no copy on decode)."""

from __future__ import annotations

import numpy as np

from mlitb.codec import Codec, Kind, register
from mlitb.errors import ErrorCode, MlitbError

FLOAT32_LE = np.dtype("<f4")  # a dtype object: np.frombuffer parses a dtype string on every call


def decode(payload: bytes | memoryview, param_count: int) -> np.ndarray:
    """A read-only float32 view of the payload after the exact length check. Finiteness is not checked
    here: the accumulator checks each value where it adds it (one pass over memory instead of two)."""
    if len(payload) != 4 * param_count:
        raise MlitbError(ErrorCode.WRONG_LENGTH, f"{len(payload)} bytes; expected {4 * param_count} "
                         f"({param_count} float32)")
    return np.frombuffer(payload, FLOAT32_LE)


def encode(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=FLOAT32_LE).tobytes()


register(Codec(Kind.DENSE_F32, "dense_f32", decode, encode, lambda param_count: 4 * param_count))
