"""Payload kind 6, dense float32 with per-batch commitments: float32[P], then a trailer the spot checks read.

A trainer of a spot-checked project (a WORK frame with a seed) may send its summed gradient S with, for each
mini-batch b = 0..B-1 of the seeded example order (batch b: examples b*c .. (b+1)*c - 1 of the order, the last
one shorter), K projections p[b][j] = <G_b, r_j> of that batch's summed gradient G_b onto +-1 directions r_j
derived from the seed (mlitb/trust/commitments.py), and the batch's summed loss. The trailer:

    u32 c (examples per batch) | u32 B (batches) | u32 k (projections per batch, K) | B x (float32[k], float32 loss)

all little-endian. The codec decodes the dense part (a view, as kind 0) after checking the trailer's exact
length; `parse` reads the commitments and checks what only the frame's header can tell (B = ceil(count / c)).
The master uses them in mlitb/trust/spot_check.py; docs/protocol.md, "Commitments".
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from mlitb.codec import Codec, Kind, register
from mlitb.errors import ErrorCode, MlitbError

K = 4  # projections per batch: a lazy fake's projection is off by ~ its error's norm in each, so 4 leave no doubt
MAX_BATCHES = 4096  # per result: the trailer stays under 82 KB (a trainer with more batches merges neighbours)
TRAILER_HEADER = struct.Struct("<III")
FLOAT32_LE = np.dtype("<f4")


@dataclass(frozen=True)
class Commitment:
    batch_size: int  # c: examples per batch (the last batch holds the rest)
    projections: np.ndarray  # float32 [B, K]: <G_b, r_j>
    losses: np.ndarray  # float32 [B]: each batch's summed loss

    @property
    def batches(self) -> int:
        return len(self.losses)


def trailer_bytes(batches: int) -> int:
    return TRAILER_HEADER.size + 4 * batches * (K + 1)


def encode_trailer(commitment: Commitment) -> bytes:
    rows = np.concatenate([np.asarray(commitment.projections, FLOAT32_LE).reshape(-1, K),
                           np.asarray(commitment.losses, FLOAT32_LE).reshape(-1, 1)], axis=1)
    return TRAILER_HEADER.pack(commitment.batch_size, commitment.batches, K) + rows.astype(FLOAT32_LE).tobytes()


def encode(vector: np.ndarray, commitment: Commitment) -> bytes:
    return np.ascontiguousarray(vector, dtype=FLOAT32_LE).tobytes() + encode_trailer(commitment)


def _split(payload: bytes | memoryview, param_count: int) -> tuple[memoryview, int, int, int, memoryview]:
    """(dense part, c, B, k, rows) after the exact-length check of the trailer its header describes."""
    view = memoryview(payload).cast("B")
    dense = 4 * param_count
    if len(view) < dense + TRAILER_HEADER.size:
        raise MlitbError(ErrorCode.COMMITMENT_LENGTH, f"{len(view)} bytes: fewer than {param_count} float32 and the "
                                                      f"{TRAILER_HEADER.size}-byte commitment header")
    c, batches, k = TRAILER_HEADER.unpack_from(view, dense)
    if k != K or not 1 <= batches <= MAX_BATCHES or c < 1:
        raise MlitbError(ErrorCode.COMMITMENT_MALFORMED, f"{batches} batches of {c} with {k} projections each; "
                                                         f"expected 1..{MAX_BATCHES} batches of >= 1 with {K}")
    if len(view) != dense + trailer_bytes(batches):
        raise MlitbError(ErrorCode.COMMITMENT_LENGTH, f"{len(view)} bytes; {param_count} float32 and {batches} "
                                                      f"committed batches take {dense + trailer_bytes(batches)}")
    return view[:dense], c, batches, k, view[dense + TRAILER_HEADER.size:]


def decode(payload: bytes | memoryview, param_count: int) -> np.ndarray:
    """The dense part as a read-only float32 view (finiteness is checked where it is added, as kind 0)."""
    return np.frombuffer(_split(payload, param_count)[0], FLOAT32_LE)


def parse(payload: bytes | memoryview, param_count: int, samples: int) -> Commitment:
    """The commitments of a kind-6 payload for a result of `samples` examples: B must be ceil(samples / c), every
    value finite and every batch loss >= 0."""
    _, c, batches, _, rows = _split(payload, param_count)
    if batches != -(-samples // c):
        raise MlitbError(ErrorCode.COMMITMENT_MALFORMED, f"{batches} batches of {c} examples; {samples} examples "
                                                         f"make {-(-samples // c)}")
    values = np.frombuffer(rows, FLOAT32_LE).reshape(batches, K + 1)
    if not np.isfinite(values).all():
        raise MlitbError(ErrorCode.NON_FINITE, "a committed projection or batch loss is NaN or infinite")
    if (values[:, K] < 0).any():
        raise MlitbError(ErrorCode.COMMITMENT_MALFORMED, "a committed batch loss is negative")
    return Commitment(c, values[:, :K], values[:, K])


# the registry's encode has no commitments to add: it gives the dense part with one empty batch (tests only)
register(Codec(Kind.DENSE_F32_COMMITTED, "dense_f32_committed", decode,
               lambda vector: encode(vector, Commitment(1, np.zeros((1, K), np.float32), np.zeros(1, np.float32))),
               lambda param_count: 4 * param_count + trailer_bytes(MAX_BATCHES)))
