"""Block quantisation to 8, 6 or 4 signed bits with one float32 scale per block (twin of web/src/codec/quant.ts).

Every step is one float32 operation so that NumPy and TypeScript (Math.fround after each
operation) produce the same bytes: scale = max|v| / L, code = clamp(floor(v / scale + 0.5), -L, L),
value = code * scale, with L = 127 (q8), 31 (q6) or 7 (q4); a block of zeros has scale 0 and codes 0.
q4 codes are packed two per byte, the earlier one in the low nibble; a pad nibble is 0.
"""

from __future__ import annotations

import numpy as np

from mlitb.errors import ErrorCode, MlitbError

BLOCK = 256  # values per scale
LEVELS = {8: 127, 6: 31, 4: 7}
F32_MAX = float(np.finfo(np.float32).max)


def n_blocks(n: int) -> int:
    return (n + BLOCK - 1) // BLOCK


def block_scales(values: np.ndarray, bits: int) -> np.ndarray:
    n = values.size
    padded = np.zeros(n_blocks(n) * BLOCK, dtype=np.float32)
    padded[:n] = np.abs(values)
    return padded.reshape(-1, BLOCK).max(axis=1) / np.float32(LEVELS[bits]) if n else np.zeros(0, np.float32)


def quantize(values: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(scales f32[blocks], codes int8[n]) for finite float32 values."""
    v = np.ascontiguousarray(values, dtype=np.float32)
    scales = block_scales(v, bits)
    per_value = np.repeat(scales, BLOCK)[: v.size]
    level = np.float32(LEVELS[bits])
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.floor(v / per_value + np.float32(0.5))
    q = np.where(per_value == 0, np.float32(0), np.clip(q, -level, level))
    return scales.astype(np.float32), q.astype(np.int8)


def dequantize(scales: np.ndarray, codes: np.ndarray) -> np.ndarray:
    return codes.astype(np.float32) * np.repeat(scales, BLOCK)[: codes.size]


def pack4(codes: np.ndarray) -> bytes:
    c = codes.astype(np.uint8) & 0x0F
    if c.size % 2:
        c = np.append(c, np.uint8(0))
    return (c[0::2] | (c[1::2] << 4)).astype(np.uint8).tobytes()


def unpack4(data: bytes | memoryview, n: int) -> np.ndarray:
    b = np.frombuffer(data, dtype=np.uint8)
    nib = np.empty(b.size * 2, dtype=np.uint8)
    nib[0::2] = b & 0x0F
    nib[1::2] = b >> 4
    if nib[n:].any():
        raise MlitbError(ErrorCode.CODEC_BAD_CODE, "the pad nibble of a q4 payload is not 0")
    codes = nib[:n].astype(np.int8)
    codes[codes > 7] -= 16
    if np.any(codes == -8):
        raise MlitbError(ErrorCode.CODEC_BAD_CODE, "q4 code -8 is outside -7..7")
    return codes


def check_scales(scales: np.ndarray, bits: int) -> None:
    """Scales must be finite, >= 0 and small enough that scale * L stays finite."""
    if not np.all(np.isfinite(scales)):
        raise MlitbError(ErrorCode.CODEC_BAD_SCALE, "a block scale is NaN or infinite")
    if np.any(scales < 0) or np.any(scales > F32_MAX / LEVELS[bits]):
        raise MlitbError(ErrorCode.CODEC_BAD_SCALE, "a block scale is negative or too large")


def check_codes8(codes: np.ndarray, bits: int = 8) -> None:
    """Byte codes (q8, and q6 before deflate) must lie in -L..L."""
    level = LEVELS[bits]
    if np.any(codes < -level) or np.any(codes > level):
        raise MlitbError(ErrorCode.CODEC_BAD_CODE, f"q{bits} code outside -{level}..{level}")
