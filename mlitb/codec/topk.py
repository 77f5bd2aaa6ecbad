"""Top-k sparsified uploads with error feedback (kinds topk_f32 and topk_q8); twin of web/src/codec/topk.ts.

Deep Gradient Compression (Lin et al., ICLR 2018): a trainer sends only the largest-magnitude
share of its accumulated gradient and keeps the rest in a local residual that is added to the
next round's gradient, so nothing is lost, only delayed. DGC's warm-up (density falling
0.25 -> 0.0625 -> ... -> the target over the first rounds) is used: it keeps the early,
fast-changing rounds close to dense. DGC's momentum correction is not used: it corrects for
momentum SGD on the workers, and here the trainer sends plain gradients to a server AdaGrad
step (momentum lives on the server, if anywhere), so there is no local momentum to correct.

Payload (little-endian), after the frame header:

    0   u32  k            coordinates sent
    4   u8   coding       0 = delta varints, 1 = bitmap (mlitb/codec/indices.py)
    5   3    reserved     0
    8   u32  index_bytes
    12  ...  index section, then zero padding to a multiple of 4
    ..  topk_f32: f32[k] values | topk_q8: f32[ceil(k/256)] scales, then i8[k] codes
"""

from __future__ import annotations

import math
import struct

import numpy as np

from mlitb.codec import indices as ix
from mlitb.codec import quant
from mlitb.errors import ErrorCode, MlitbError

HEAD = struct.Struct("<IB3xI")
WARMUP_START = 0.25


def density_at(round: int, density: float, warmup_rounds: int) -> float:
    """DGC warm-up: 0.25, 0.0625, ... (each a quarter of the last) over `warmup_rounds`, never below `density`."""
    if round >= warmup_rounds:
        return density
    stage = (4 * round) // warmup_rounds
    return max(density, WARMUP_START / 4**stage)


def count_for(density: float, length: int) -> int:
    return min(length, max(1, math.ceil(density * length)))


def select(acc: np.ndarray, k: int) -> np.ndarray:
    """Indices (ascending) of the k largest |acc|; ties at the threshold go to the lowest indices."""
    mag = np.abs(acc)
    if k >= mag.size:
        return np.arange(mag.size)
    threshold = np.partition(mag, mag.size - k)[mag.size - k]
    above = np.flatnonzero(mag > threshold)
    at = np.flatnonzero(mag == threshold)[: k - above.size]
    return np.sort(np.concatenate([above, at]))


def encode(acc: np.ndarray, k: int, quantized: bool) -> tuple[bytes, np.ndarray, np.ndarray]:
    """(payload, indices, the values the decoder will see) for the top k of `acc`."""
    idx = select(acc, k)
    coding, index_bytes = ix.encode_indices(idx, acc.size)
    pad = b"\0" * (-len(index_bytes) % 4)
    parts = [HEAD.pack(idx.size, coding, len(index_bytes)), index_bytes, pad]
    kept = acc[idx].astype(np.float32)
    if quantized:
        scales, codes = quant.quantize(kept, 8)
        parts += [scales.astype("<f4").tobytes(), codes.tobytes()]
        sent = quant.dequantize(scales, codes)
    else:
        parts.append(kept.astype("<f4").tobytes())
        sent = kept
    return b"".join(parts), idx, sent


def count_of(payload: bytes | memoryview) -> int | None:
    """The coordinate count a sparse payload's header claims (None if it has no header)."""
    return HEAD.unpack_from(payload)[0] if len(payload) >= HEAD.size else None


def max_payload_bytes(length: int, quantized: bool) -> int:
    """Largest payload a trainer sends in a sparse kind: a sparse payload no smaller than dense float32 is sent
    dense instead (`Uplink`), so the joined client's frame cap stays one dense gradient."""
    return 4 * length - 1


def decode(payload: bytes | memoryview, length: int, max_count: int, quantized: bool) -> np.ndarray:
    """The dense float32 vector a payload stands for; MlitbError on anything malformed or hostile."""
    mv = memoryview(payload).cast("B")
    if len(mv) < HEAD.size:
        raise MlitbError(ErrorCode.CODEC_LENGTH, f"sparse payload of {len(mv)} bytes is shorter than its header")
    k, coding, index_bytes = HEAD.unpack_from(mv)
    if any(mv[5:8]):
        raise MlitbError(ErrorCode.CODEC_MALFORMED, "reserved bytes of a sparse payload are not 0")
    if k > max_count:
        raise MlitbError(ErrorCode.CODEC_TOO_DENSE, f"{k} coordinates; this project allows at most {max_count}")
    start = HEAD.size + index_bytes + (-index_bytes % 4)
    values_bytes = 4 * quant.n_blocks(k) + k if quantized else 4 * k
    if len(mv) != start + values_bytes:
        raise MlitbError(ErrorCode.CODEC_LENGTH, f"sparse payload of {len(mv)} bytes; its header implies {start + values_bytes}")
    if any(mv[HEAD.size + index_bytes:start]):
        raise MlitbError(ErrorCode.CODEC_MALFORMED, "index padding is not 0")
    idx = ix.decode_indices(coding, mv[HEAD.size:HEAD.size + index_bytes], k, length)
    if quantized:
        nb = quant.n_blocks(k)
        scales = np.frombuffer(mv[start:start + 4 * nb], dtype="<f4")
        quant.check_scales(scales, 8)
        codes = np.frombuffer(mv[start + 4 * nb:], dtype=np.int8)
        quant.check_codes8(codes)
        values = quant.dequantize(scales, codes)
    else:
        values = np.frombuffer(mv[start:], dtype="<f4")
        if not np.all(np.isfinite(values)):
            raise MlitbError(ErrorCode.NON_FINITE, "a sparse value is NaN or infinite")
    dense = np.zeros(length, dtype=np.float32)
    dense[idx] = values
    return dense


def _register() -> None:
    """Kinds 1 and 2 in the registry (mlitb.codec): decoding bounded only by the parameter count; the runtime
    applies the project's density first (mlitb/codec/link.py, check_upload). `encode` keeps the default 1%."""
    from mlitb.codec import Codec, Kind, register

    for kind, quantized, name in ((Kind.TOPK_F32, False, "topk_f32"), (Kind.TOPK_Q8, True, "topk_q8")):
        register(Codec(kind, name, lambda p, n, q=quantized: decode(p, n, n, q),
                       lambda v, q=quantized: encode(v, count_for(0.01, v.size), q)[0],
                       lambda n, q=quantized: max_payload_bytes(n, q)))


_register()


class ErrorFeedback:
    """A trainer's residual: what it has computed but not yet sent (float32, one per parameter)."""

    def __init__(self, length: int):
        self.residual = np.zeros(length, dtype=np.float32)

    def compress(self, gradient: np.ndarray, k: int, quantized: bool) -> bytes:
        acc = self.residual + gradient.astype(np.float32, copy=False)
        payload, idx, sent = encode(acc, k, quantized)
        # acc - sent is exact in float32 (Sterbenz: a rounded value is within 2x of its source), so
        # sent + residual == acc holds bit for bit
        acc[idx] -= sent
        self.residual = acc
        return payload

    def reset(self, length: int) -> None:
        """After a model change (new class) or a full resync the old residual no longer applies."""
        self.residual = np.zeros(length, dtype=np.float32)
