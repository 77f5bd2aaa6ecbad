"""Payload kinds: how the payload of a GRADIENT or PARAMS frame is encoded, and the one registry of codecs.

The header's u16 at offset 2 names the kind (docs/protocol.md). Kind 0, dense float32, is what
every frame carried before kinds existed, so those frames are byte-identical. The other
numbers are reserved for the update codecs (docs/architecture.md, "Seams"); until a codec is
registered for a kind, a frame of that kind is refused with UNKNOWN_PAYLOAD_KIND. A decoder
turns a payload into a dense float32 vector of the project's parameter count or raises
MlitbError with a stable code, never anything else, so the runtime never branches on the kind.
The TypeScript twin is web/src/codec/.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable

import numpy as np

from mlitb.errors import ErrorCode, MlitbError


class Kind(enum.IntEnum):
    DENSE_F32 = 0
    TOPK_F32 = 1
    TOPK_Q8 = 2
    DELTA_Q8 = 3
    DELTA_Q4 = 4
    DELTA_Q6Z = 5
    DENSE_F32_COMMITTED = 6  # dense with per-batch commitments for spot checks (committed.py)


@dataclass(frozen=True)
class Codec:
    kind: int
    name: str
    # (payload, parameter count) -> dense float32 vector of that length; raises MlitbError only
    decode: Callable[[bytes | memoryview, int], np.ndarray]
    # dense float32 vector -> payload bytes
    encode: Callable[[np.ndarray], bytes]
    # largest payload this codec may produce for a parameter count: the size cap of a joined client's frames
    max_payload_bytes: Callable[[int], int]


_CODECS: dict[int, Codec] = {}
_DECODERS: dict[int, Callable] = {}  # kind -> decode, for the per-frame lookup (~0.3 us less than via Codec)


def register(codec: Codec) -> None:
    """Add a codec for a reserved kind. Kinds are fixed numbers (a client and server must agree), so a
    kind outside `Kind` or one already registered is a programming error."""
    if codec.kind not in Kind.__members__.values():
        raise ValueError(f"payload kind {codec.kind} is not reserved in mlitb.codec.Kind")
    if codec.kind in _CODECS:
        raise ValueError(f"payload kind {codec.kind} already has the codec {_CODECS[codec.kind].name}")
    _CODECS[codec.kind] = codec
    _DECODERS[codec.kind] = codec.decode


def get(kind: int) -> Codec:
    codec = _CODECS.get(kind)
    if codec is None:
        name = Kind(kind).name.lower() if kind in Kind.__members__.values() else "unassigned"
        raise MlitbError(ErrorCode.UNKNOWN_PAYLOAD_KIND,
                         f"payload kind {kind} ({name}) is not supported by this server; "
                         f"supported: {', '.join(f'{k} {c.name}' for k, c in sorted(_CODECS.items()))}")
    return codec


def supported(kind: int) -> bool:
    return kind in _CODECS


def decode(kind: int, payload: bytes | memoryview, param_count: int) -> np.ndarray:
    """The dense float32 vector a payload of `kind` encodes (a view where the codec allows)."""
    decoder = _DECODERS.get(kind)
    if decoder is None:
        get(kind)  # raises UNKNOWN_PAYLOAD_KIND
    return decoder(payload, param_count)


def max_payload_bytes(param_count: int) -> int:
    """The largest payload any registered codec allows for `param_count` parameters."""
    return max(c.max_payload_bytes(param_count) for c in _CODECS.values())


from mlitb.codec import dense as _dense  # noqa: E402  (registers kind 0; it needs Codec and register above)
from mlitb.codec import delta as _delta  # noqa: E402  (kinds 3, 4, 5: shadow deltas)
from mlitb.codec import topk as _topk  # noqa: E402  (kinds 1, 2: top-k uploads)
from mlitb.codec import committed as _committed  # noqa: E402  (kind 6: dense with spot-check commitments)

__all__ = ["Codec", "Kind", "decode", "get", "max_payload_bytes", "register", "supported"]
