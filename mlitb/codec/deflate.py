"""Raw deflate (RFC 1951) for the deflated delta kind, decompressed under a hard cap; twin of web/src/codec/inflate.ts.

Only the master compresses (zlib, level 6); byte identity between the twins is of the decoded result.
A hostile stream cannot make a decoder allocate or work beyond the size the header and the model imply:
decompression stops one byte past it (a zip bomb costs at most that), and the compressed input itself is
capped at `bound(size)`. Verdicts, in the order a sequential decoder meets them, match the TypeScript one:
more output than expected -> CODEC_LENGTH; a stream error, a truncated stream or bytes after the final
block -> CODEC_MALFORMED; a complete stream of the wrong size -> CODEC_LENGTH.
"""

from __future__ import annotations

import zlib

from mlitb.errors import ErrorCode, MlitbError

LEVEL = 6


def bound(size: int) -> int:
    """Largest raw deflate stream zlib produces for `size` bytes (deflateBound less the zlib wrapper)."""
    return size + (size >> 12) + (size >> 14) + (size >> 25) + 13


def compress(data: bytes) -> bytes:
    c = zlib.compressobj(LEVEL, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def decompress(payload: bytes | memoryview, size: int) -> bytes:
    """Exactly `size` bytes from a raw deflate stream, or MlitbError."""
    if len(payload) > bound(size):
        raise MlitbError(ErrorCode.CODEC_LENGTH, f"deflated payload of {len(payload)} bytes; at most {bound(size)} "
                                                 f"for {size} bytes")
    d = zlib.decompressobj(-15)
    try:
        out = d.decompress(payload, size + 1)  # one byte past the cap tells "too long" from "exact"
    except zlib.error as exc:
        raise MlitbError(ErrorCode.CODEC_MALFORMED, f"deflate stream: {exc}") from None
    if len(out) > size:
        raise MlitbError(ErrorCode.CODEC_LENGTH, f"deflate stream inflates past {size} bytes")
    if not d.eof:
        raise MlitbError(ErrorCode.CODEC_MALFORMED, "deflate stream ends before its final block")
    if d.unused_data:
        raise MlitbError(ErrorCode.CODEC_MALFORMED, f"{len(d.unused_data)} bytes after the deflate stream's final block")
    if len(out) != size:
        raise MlitbError(ErrorCode.CODEC_LENGTH, f"deflate stream inflates to {len(out)} bytes; {size} expected")
    return out
