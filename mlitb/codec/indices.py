"""Index coding for sparse payloads: LEB128 delta varints or a bitmap, whichever is smaller.

Twin of web/src/codec/indices.ts (byte for byte). Deltas: the first is the index itself,
each next one is the gap to the previous index (>= 1, so indices are strictly increasing);
varints are canonical (no trailing zero group). Bitmap: bit i (LSB first) of byte i // 8 set.
Decoders raise MlitbError with a stable code and never anything else.
"""

from __future__ import annotations

import numpy as np

from mlitb.errors import ErrorCode, MlitbError

DELTA = 0
BITMAP = 1
_LIMITS = np.array([1 << 7, 1 << 14, 1 << 21, 1 << 28], dtype=np.uint64)


def varint_sizes(deltas: np.ndarray) -> np.ndarray:
    """Bytes each value takes as a LEB128 varint (1..5 for u32)."""
    d = deltas.astype(np.uint64, copy=False)
    return 1 + (d[:, None] >= _LIMITS[None, :]).sum(axis=1)


def deltas_of(indices: np.ndarray) -> np.ndarray:
    idx = indices.astype(np.uint64, copy=False)
    return np.diff(idx, prepend=np.uint64(0)) if idx.size else idx


def encode_varints(values: np.ndarray) -> bytes:
    v = values.astype(np.uint64, copy=False)
    n = varint_sizes(v)
    starts = np.cumsum(n) - n
    out = np.zeros(int(n.sum()), dtype=np.uint8)
    for j in range(5):
        sel = n > j
        if not sel.any():
            break
        group = (v[sel] >> np.uint64(7 * j)) & np.uint64(0x7F)
        more = (n[sel] > j + 1).astype(np.uint64) << np.uint64(7)
        out[starts[sel] + j] = (group | more).astype(np.uint8)
    return out.tobytes()


def decode_varints(data: bytes | memoryview, count: int) -> np.ndarray:
    """Exactly `count` canonical u32 varints filling `data`, as uint64."""
    b = np.frombuffer(data, dtype=np.uint8)
    if count == 0:
        if b.size:
            raise MlitbError(ErrorCode.CODEC_MALFORMED, "index bytes given for zero coordinates")
        return np.zeros(0, dtype=np.uint64)
    ends = np.flatnonzero(b < 0x80)
    if ends.size != count or ends[-1] != b.size - 1:
        raise MlitbError(ErrorCode.CODEC_MALFORMED, f"index section holds {ends.size} complete varints, header says {count}")
    lengths = np.diff(ends, prepend=-1)
    if lengths.max() > 5:
        raise MlitbError(ErrorCode.CODEC_MALFORMED, "a varint is longer than 5 bytes")
    if np.any((b[ends] == 0) & (lengths > 1)):
        raise MlitbError(ErrorCode.CODEC_MALFORMED, "a varint is not in its shortest form")
    starts = ends - lengths + 1
    shift = (np.arange(b.size) - np.repeat(starts, lengths)).astype(np.uint64) * np.uint64(7)
    parts = (b & 0x7F).astype(np.uint64) << shift
    values = np.add.reduceat(parts, starts)
    if values.max() > 0xFFFFFFFF:
        raise MlitbError(ErrorCode.CODEC_INDEX_RANGE, "an index delta exceeds 32 bits")
    return values


def encode_indices(indices: np.ndarray, length: int) -> tuple[int, bytes]:
    """(coding, bytes) for sorted unique indices into a vector of `length`; the smaller coding wins, delta on a tie."""
    deltas = deltas_of(indices)
    bitmap_size = (length + 7) // 8
    if int(varint_sizes(deltas).sum()) <= bitmap_size:
        return DELTA, encode_varints(deltas)
    bits = np.zeros(bitmap_size * 8, dtype=np.uint8)
    bits[indices] = 1
    return BITMAP, np.packbits(bits, bitorder="little").tobytes()


def decode_indices(coding: int, data: bytes | memoryview, count: int, length: int) -> np.ndarray:
    """Strictly increasing int64 indices, all < length, exactly `count` of them."""
    if coding == DELTA:
        deltas = decode_varints(data, count)
        if count > 1 and np.any(deltas[1:] == 0):
            raise MlitbError(ErrorCode.CODEC_INDEX_ORDER, "indices are not strictly increasing (a zero gap)")
        indices = np.cumsum(deltas, dtype=np.uint64)
        if count and indices[-1] >= length:
            raise MlitbError(ErrorCode.CODEC_INDEX_RANGE, f"index {int(indices[-1])} is outside the {length} parameters")
        return indices.astype(np.int64)
    if coding == BITMAP:
        if len(data) != (length + 7) // 8:
            raise MlitbError(ErrorCode.CODEC_MALFORMED, f"bitmap of {len(data)} bytes for {length} parameters")
        bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
        if bits[length:].any():
            raise MlitbError(ErrorCode.CODEC_INDEX_RANGE, "bitmap sets a bit past the last parameter")
        indices = np.flatnonzero(bits)
        if indices.size != count:
            raise MlitbError(ErrorCode.CODEC_MALFORMED, f"bitmap sets {indices.size} bits, header says {count}")
        return indices.astype(np.int64)
    raise MlitbError(ErrorCode.CODEC_MALFORMED, f"unknown index coding {coding}")
