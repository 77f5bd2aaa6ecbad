"""Binary WebSocket frame codec: a fixed 24-byte little-endian header plus a raw payload.

Layout (all little-endian), mirrored in web/src/protocol/frames.ts and docs/protocol.md:

    offset size field
    0      1    type     message type (MessageType)
    1      1    version  protocol version (VERSION)
    2      2    kind     payload kind of GRADIENT and PARAMS (mlitb.codec; 0 = dense float32), else 0
    4      4    project  project id (u32)
    8      4    round    round number (u32)
    12     4    count    samples / ids / parameters / error number, by type
    16     4    aux      milliseconds (compute time or work time), by type
    20     4    value    f32: summed loss or test error, by type
    24     ...  payload  float32[] / uint32[] / UTF-8 JSON, by type

Gradients and parameters travel as raw float32 (kind 0) or a registered codec's encoding: no JSON
numbers on the hot path. The offset-2 field was `flags` (must be 0) before payload kinds, so every
frame of kind 0 is byte-identical to what was sent before (tests/unit/test_frames.py pins bytes).
"""

from __future__ import annotations

import enum
import json
import math
import struct
from dataclasses import dataclass

import numpy as np

from mlitb import codec
from mlitb.errors import ErrorCode, MlitbError

VERSION = 1
HEADER = struct.Struct("<BBHIIIIf")
HEADER_SIZE = HEADER.size  # 24
MAX_JSON_PAYLOAD = 8 * 1024
U32_MAX = 0xFFFFFFFF


class MessageType(enum.IntEnum):
    # client -> server
    JOIN = 1  # payload: JSON JoinRequest
    GRADIENT = 2  # count=samples, aux=compute ms, value=summed loss, payload=f32[P] summed gradient
    EVAL = 3  # count=examples evaluated, aux=compute ms, value=error rate, no payload
    LEAVE = 4  # no payload
    # server -> client
    WELCOME = 16  # payload: JSON Welcome
    ALLOC = 17  # count=n, payload=u32[n] sorted data ids this trainer owns
    PARAMS = 18  # round, count=P, payload=f32[P] parameters (one frame shared by all clients)
    WORK = 19  # round, aux=work ms for this round
    ERROR = 20  # count=error number, payload: JSON {code, number, message}


CLIENT_TYPES = {MessageType.JOIN, MessageType.GRADIENT, MessageType.EVAL, MessageType.LEAVE}
F32_PAYLOAD = {MessageType.GRADIENT, MessageType.PARAMS}  # the types whose payload has a kind
JSON_PAYLOAD = {MessageType.JOIN, MessageType.WELCOME, MessageType.ERROR}


@dataclass(frozen=True)
class Frame:
    type: MessageType
    project: int = 0
    round: int = 0
    count: int = 0
    aux: int = 0
    value: float = 0.0
    payload: bytes | memoryview = b""
    kind: int = 0  # payload kind (mlitb.codec.Kind) of GRADIENT and PARAMS; 0 for every other type

    def vector(self, param_count: int) -> np.ndarray:
        """The payload of a GRADIENT or PARAMS frame as a dense float32 vector of `param_count` values,
        decoded by its kind's codec (dense: a view, no copy); MlitbError for a wrong length or kind."""
        return _decode_payload(self.kind, self.payload, param_count)

    def floats(self) -> np.ndarray:
        """The payload as a read-only float32 view (no copy)."""
        if len(self.payload) % 4:
            raise MlitbError(ErrorCode.FRAME_MALFORMED, "float32 payload length is not a multiple of 4")
        return np.frombuffer(self.payload, dtype="<f4")

    def uint32s(self) -> np.ndarray:
        if len(self.payload) % 4:
            raise MlitbError(ErrorCode.FRAME_MALFORMED, "uint32 payload length is not a multiple of 4")
        return np.frombuffer(self.payload, dtype="<u4")

    def json(self) -> dict:
        if len(self.payload) > MAX_JSON_PAYLOAD:
            raise MlitbError(ErrorCode.FRAME_TOO_LARGE, f"JSON payload over {MAX_JSON_PAYLOAD} bytes")
        try:
            obj = json.loads(bytes(self.payload).decode("utf-8"))
        except RecursionError:
            raise MlitbError(ErrorCode.FRAME_MALFORMED, "JSON payload is nested too deeply") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MlitbError(ErrorCode.FRAME_MALFORMED, f"payload is not UTF-8 JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise MlitbError(ErrorCode.FRAME_MALFORMED, "JSON payload must be an object")
        return obj


def encode(
    type: MessageType,
    *,
    project: int = 0,
    round: int = 0,
    count: int = 0,
    aux: int = 0,
    value: float = 0.0,
    payload: bytes | np.ndarray | dict = b"",
    kind: int = 0,
) -> bytes:
    if isinstance(payload, dict):
        body = json.dumps(payload, separators=(",", ":")).encode()
    elif isinstance(payload, np.ndarray):
        body = payload.astype(payload.dtype.newbyteorder("<"), copy=False).tobytes()
    else:
        body = bytes(payload)
    return HEADER.pack(int(type), VERSION, kind, project, round, count, aux, value) + body


def decode(data: bytes | bytearray | memoryview, max_size: int) -> Frame:
    """Decode one client frame. The size cap is checked before anything else is read."""
    if len(data) > max_size:
        raise MlitbError(ErrorCode.FRAME_TOO_LARGE, f"frame of {len(data)} bytes exceeds the cap of {max_size}")
    if len(data) < HEADER_SIZE:
        raise MlitbError(ErrorCode.FRAME_MALFORMED, f"frame of {len(data)} bytes is shorter than the {HEADER_SIZE}-byte header")
    type_, version, kind, project, round_, count, aux, value = _unpack_header(data)
    if version != VERSION:
        raise MlitbError(ErrorCode.UNSUPPORTED_VERSION, f"protocol version {version}; this server speaks {VERSION}")
    mtype = _TYPES.get(type_)
    if mtype is None:
        raise MlitbError(ErrorCode.UNKNOWN_MESSAGE, f"unknown message type {type_}")
    if kind and not (mtype in F32_PAYLOAD and _supported(kind)):
        if mtype in F32_PAYLOAD:
            codec.get(kind)  # raises UNKNOWN_PAYLOAD_KIND, naming the kinds this server has
        raise MlitbError(ErrorCode.FRAME_MALFORMED, f"{mtype.name} frames have no payload kind; it must be 0")
    if not _isfinite(value):
        raise MlitbError(ErrorCode.NON_FINITE, "header value is NaN or infinite")
    # Frame(...) without the frozen dataclass's __init__ (one object.__setattr__ per field): ~0.6 us less per frame
    frame = _new_frame(Frame)
    fields = frame.__dict__
    fields["type"] = mtype
    fields["project"] = project
    fields["round"] = round_
    fields["count"] = count
    fields["aux"] = aux
    fields["value"] = value
    fields["payload"] = memoryview(data)[HEADER_SIZE:]
    fields["kind"] = kind
    return frame


_TYPES = {t.value: t for t in MessageType}
_unpack_header = HEADER.unpack_from
_isfinite = math.isfinite
_supported = codec.supported
_decode_payload = codec.decode
_new_frame = object.__new__


def error_frame(err: MlitbError, project: int = 0, round: int = 0) -> bytes:
    return encode(MessageType.ERROR, project=project, round=round, count=err.code.number, payload=err.to_json())
