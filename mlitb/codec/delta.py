"""Quantised parameter deltas against a shared shadow (kinds delta_q8, delta_q4); twin of web/src/codec/delta.ts.

Each round the master sends one frame to every up-to-date client: the difference between the
new parameters and a shadow copy, quantised per block. Master and clients both add the
dequantised difference to their shadow with the same float32 additions, so the shadows stay
bit-identical; the quantisation error stays in `params - shadow` and is sent next round (error
feedback on the server). A client that joined, reconnected or missed a frame gets the shadow
itself as a dense float32 frame. Memory: one extra vector per project.

Payload: f32[ceil(P/256)] block scales, then i8[P] codes (q8) or P 4-bit codes packed low
nibble first (q4).
"""

from __future__ import annotations

import numpy as np

from mlitb.codec import quant
from mlitb.errors import ErrorCode, MlitbError


def payload_size(length: int, bits: int) -> int:
    return 4 * quant.n_blocks(length) + (length if bits == 8 else (length + 1) // 2)


def encode(delta: np.ndarray, bits: int) -> tuple[bytes, np.ndarray]:
    """(payload, the dequantised delta every decoder will reconstruct)."""
    scales, codes = quant.quantize(delta, bits)
    body = codes.tobytes() if bits == 8 else quant.pack4(codes)
    return scales.astype("<f4").tobytes() + body, quant.dequantize(scales, codes)


def decode(payload: bytes | memoryview, length: int, bits: int) -> np.ndarray:
    mv = memoryview(payload).cast("B")
    if len(mv) != payload_size(length, bits):
        raise MlitbError(ErrorCode.CODEC_LENGTH, f"delta payload of {len(mv)} bytes; {payload_size(length, bits)} expected")
    nb = quant.n_blocks(length)
    scales = np.frombuffer(mv[:4 * nb], dtype="<f4")
    quant.check_scales(scales, bits)
    if bits == 8:
        codes = np.frombuffer(mv[4 * nb:], dtype=np.int8)
        quant.check_codes8(codes)
    else:
        codes = quant.unpack4(mv[4 * nb:], length)
    return quant.dequantize(scales, codes)


def _register() -> None:
    """Kinds 3 and 4 in the registry (mlitb.codec): a payload decodes to the dense change it carries."""
    from mlitb.codec import Codec, Kind, register

    for kind, bits, name in ((Kind.DELTA_Q8, 8, "delta_q8"), (Kind.DELTA_Q4, 4, "delta_q4")):
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
