"""Quantised parameter deltas against a shared shadow (kinds delta_q8, delta_q4, delta_q6z); twin of web/src/codec/delta.ts.

Each round the master sends one frame to every up-to-date client: the difference between the
new parameters and a shadow copy, quantised per block. Master and clients both add the
dequantised difference to their shadow with the same float32 additions, so the shadows stay
bit-identical; the quantisation error stays in `params - shadow` and is sent next round (error
feedback on the server). A client that joined, reconnected or missed a frame gets the shadow
itself as a dense float32 frame. Memory: one extra vector per project.

Payload: f32[ceil(P/256)] block scales, then i8[P] codes (q8) or P 4-bit codes packed low
nibble first (q4). delta_q6z (`bits` 6) quantises to -31..31, lays scales and i8 codes out as q8 does
and sends that raw deflate-compressed (mlitb/codec/deflate.py): after error feedback most codes are
near 0 (about 3.2 bits of entropy on the paper network), so it is about 9x smaller than float32 where
packed q4 stops at 7.9x, with q8's precision nearly (measured in docs/protocol.md).
"""

from __future__ import annotations

import numpy as np

from mlitb.codec import deflate, quant
from mlitb.errors import ErrorCode, MlitbError


def raw_size(length: int, bits: int) -> int:
    """Bytes of scales and codes (for q6z: before deflate)."""
    return 4 * quant.n_blocks(length) + (length // 2 + length % 2 if bits == 4 else length)


def payload_size(length: int, bits: int) -> int:
    """The exact payload size (q8, q4), or the largest a deflated one may be (q6z)."""
    return deflate.bound(raw_size(length, 6)) if bits == 6 else raw_size(length, bits)


def encode(delta: np.ndarray, bits: int) -> tuple[bytes, np.ndarray]:
    """(payload, the dequantised delta every decoder will reconstruct)."""
    scales, codes = quant.quantize(delta, bits)
    body = quant.pack4(codes) if bits == 4 else codes.tobytes()
    raw = scales.astype("<f4").tobytes() + body
    return deflate.compress(raw) if bits == 6 else raw, quant.dequantize(scales, codes)


def decode(payload: bytes | memoryview, length: int, bits: int) -> np.ndarray:
    mv = memoryview(payload).cast("B")
    if bits == 6:  # inflate to exactly the q8 layout (capped there), then check it like q8 with 31 levels
        mv = memoryview(deflate.decompress(mv, raw_size(length, 6)))
    if len(mv) != raw_size(length, bits):
        raise MlitbError(ErrorCode.CODEC_LENGTH, f"delta payload of {len(mv)} bytes; {raw_size(length, bits)} expected")
    nb = quant.n_blocks(length)
    scales = np.frombuffer(mv[:4 * nb], dtype="<f4")
    quant.check_scales(scales, bits)
    if bits != 4:
        codes = np.frombuffer(mv[4 * nb:], dtype=np.int8)
        quant.check_codes8(codes, bits)
    else:
        codes = quant.unpack4(mv[4 * nb:], length)
    return quant.dequantize(scales, codes)


def _register() -> None:
    """Kinds 3, 4 and 5 in the registry (mlitb.codec): a payload decodes to the dense change it carries."""
    from mlitb.codec import Codec, Kind, register

    for kind, bits, name in ((Kind.DELTA_Q8, 8, "delta_q8"), (Kind.DELTA_Q4, 4, "delta_q4"),
                             (Kind.DELTA_Q6Z, 6, "delta_q6z")):
        register(Codec(kind, name, lambda p, n, b=bits: decode(p, n, b), lambda v, b=bits: encode(v, b)[0],
                       lambda n, b=bits: payload_size(n, b)))


_register()


class Shadow:
    """The parameters every client holds, as the master tracks them (and as a client keeps them)."""

    def __init__(self, params: np.ndarray):
        self.values = np.array(params, dtype=np.float32)

    def advance(self, params: np.ndarray, bits: int) -> bytes:
        """Master side: encode params - shadow and add what was sent to the shadow."""
        payload, sent = encode(params.astype(np.float32, copy=False) - self.values, bits)
        # a new array, never written in place: the closure record keeps each round's values by reference
        self.values = self.values + sent
        return payload

    def apply(self, payload: bytes | memoryview, bits: int) -> np.ndarray:
        """Client side: add a received delta; returns the new parameters."""
        self.values += decode(payload, self.values.size, bits)
        return self.values

    def reset(self, params: np.ndarray) -> None:
        self.values = np.array(params, dtype=np.float32)
