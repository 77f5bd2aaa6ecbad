"""One registry of every error MLitB reports: stable code, number, HTTP status, message.

Clients see the string code (stable, documented in docs/errors.md, which a test keeps in
sync) and a readable message; WebSocket error frames also carry the number.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorInfo:
    number: int
    http_status: int
    summary: str
    close: bool = False  # a WebSocket peer that sends this is disconnected


class ErrorCode(enum.Enum):
    # frame-level errors (WebSocket)
    FRAME_TOO_LARGE = ErrorInfo(1001, 413, "frame is larger than this project allows", close=True)
    FRAME_MALFORMED = ErrorInfo(1002, 400, "frame could not be decoded")
    UNKNOWN_MESSAGE = ErrorInfo(1003, 400, "unknown message type")
    UNSUPPORTED_VERSION = ErrorInfo(1004, 400, "unsupported protocol version", close=True)
    NOT_JOINED = ErrorInfo(1005, 409, "join a project before sending this message")
    ALREADY_JOINED = ErrorInfo(1006, 409, "this connection already joined a project")
    WRONG_ROLE = ErrorInfo(1007, 403, "this message is not allowed for the connection's role")
    WRONG_PROJECT = ErrorInfo(1008, 400, "frame names a different project than the connection joined")
    STALE_ROUND = ErrorInfo(1009, 409, "frame is for a round that is not open")
    WRONG_LENGTH = ErrorInfo(1010, 400, "payload length does not match the model's parameter count")
    NON_FINITE = ErrorInfo(1011, 400, "payload holds NaN or infinite values")
    BAD_SAMPLE_COUNT = ErrorInfo(1012, 400, "sample count is zero or larger than the allocation allows")
    DUPLICATE_RESULT = ErrorInfo(1013, 409, "a result for this round was already received")
    BAD_VALUE = ErrorInfo(1014, 400, "a header value is out of range")
    UNKNOWN_PAYLOAD_KIND = ErrorInfo(1015, 400, "the frame's payload kind is not supported by this server")
    TOO_STALE = ErrorInfo(1016, 409, "result was computed from parameters more than max_staleness versions old")
    # compressed payloads (mlitb/codec/, docs/protocol.md "Payload kinds")
    CODEC_LENGTH = ErrorInfo(1101, 400, "compressed payload length does not match what its header and the model imply")
    CODEC_MALFORMED = ErrorInfo(1102, 400, "compressed payload is malformed (coding, reserved bytes, varints, bitmap, deflate stream)")
    CODEC_INDEX_RANGE = ErrorInfo(1103, 400, "a sparse index is outside the parameter vector")
    CODEC_INDEX_ORDER = ErrorInfo(1104, 400, "sparse indices are not strictly increasing")
    CODEC_TOO_DENSE = ErrorInfo(1105, 400, "sparse payload sends more coordinates than the project's density allows")
    CODEC_BAD_SCALE = ErrorInfo(1106, 400, "a quantisation scale is negative, too large, NaN or infinite")
    CODEC_BAD_CODE = ErrorInfo(1107, 400, "a quantised code is outside its range (or a pad nibble is not 0)")
    CODEC_NOT_ALLOWED = ErrorInfo(1108, 400, "this payload kind is not the project's codec for this message")
    # REST / project errors
    UNKNOWN_PROJECT = ErrorInfo(2001, 404, "no project with this id")
    INVALID_NETWORK = ErrorInfo(2002, 422, "network spec is invalid")
    INVALID_HYPER = ErrorInfo(2003, 422, "hyper-parameters are invalid")
    UNKNOWN_DATASET = ErrorInfo(2004, 422, "unknown data set")
    INVALID_REQUEST = ErrorInfo(2005, 422, "request body is invalid")
    NO_DATA = ErrorInfo(2006, 409, "project has no data for this split")
    BAD_RANGE = ErrorInfo(2007, 416, "requested data range is outside the data set or too large")
    DATASET_MISSING = ErrorInfo(2008, 503, "data set files are not installed on this server")
    AUTH_REQUIRED = ErrorInfo(2009, 401, "this action needs a token")
    FORBIDDEN = ErrorInfo(2010, 403, "this token does not allow this action")
    NOT_FOUND = ErrorInfo(2011, 404, "no such path")
    BAD_REQUEST = ErrorInfo(2012, 400, "request could not be parsed")
    METHOD_NOT_ALLOWED = ErrorInfo(2013, 405, "method not allowed on this path")
    BAD_ARCHIVE = ErrorInfo(2014, 422, "the uploaded archive is unsafe or unreadable")
    EMPTY_DATASET = ErrorInfo(2015, 422, "the upload holds no usable data set")
    WRONG_CONTENT_TYPE = ErrorInfo(2016, 415, "wrong content type")
    UPLOAD_TOO_LARGE = ErrorInfo(2017, 413, "the upload is larger than this server accepts")
    TRAINING_RUNNING = ErrorInfo(2018, 409, "the project has trainers: stop them before replacing its weights")
    BAD_IMAGE = ErrorInfo(2019, 422, "the image could not be decoded as PNG or JPEG")
    CANNOT_ADD_CLASS = ErrorInfo(2020, 409, "this project's network or data cannot take another class")
    UNKNOWN_SPLIT = ErrorInfo(2021, 404, "no such data split: a project's splits are 'train' and 'test'")
    PROJECT_UNAVAILABLE = ErrorInfo(2022, 503, "the project's actor is restarting (cluster mode); try again shortly")
    # limits
    TOO_MANY_CONNECTIONS = ErrorInfo(3001, 429, "too many connections from this address or to this project", close=True)
    RATE_LIMITED = ErrorInfo(3002, 429, "too many frames; slow down")
    CREATION_RATE_LIMITED = ErrorInfo(3003, 429, "this address created too many projects recently; try again later")
    TOO_MANY_PROJECTS = ErrorInfo(3004, 429, "this address has created as many projects as one address may keep")
    PROJECT_QUOTA_EXCEEDED = ErrorInfo(3005, 507, "the project's stored data would exceed its storage quota")
    SERVER_QUOTA_EXCEEDED = ErrorInfo(3006, 507, "the server's stored data would exceed its storage quota")
    DISK_LOW = ErrorInfo(3007, 507, "the server's disk is nearly full; uploads are refused for now")
    # trust in open projects (mlitb/trust/)
    TOO_MANY_TRAINERS_FROM_ADDRESS = ErrorInfo(5001, 429, "this address already runs the most trainers this project "
                                                          "allows from one address", close=True)
    QUARANTINED = ErrorInfo(5002, 403, "this volunteer is quarantined: its results failed spot checks and are ignored",
                            close=True)
    SPOT_CHECK_FAILED = ErrorInfo(5003, 422, "the master recomputed this result and it does not match: a strike")
    POW_REQUIRED = ErrorInfo(5004, 428, "joining as one more trainer from this address, or as any trainer while the "
                                        "project sees a burst of JOINs, needs a proof of work", close=True)
    POW_INVALID = ErrorInfo(5005, 403, "the proof of work is malformed, expired, reused, for another project or "
                                       "address, or too weak (also when the load rose since the challenge was "
                                       "asked: ask again)", close=True)
    COMMITMENT_LENGTH = ErrorInfo(5006, 400, "the commitment trailer's length does not match the batch count it "
                                             "declares (docs/protocol.md, \"Commitments\")")
    COMMITMENT_MALFORMED = ErrorInfo(5007, 400, "the commitments' batch size, batch count or projection count is out "
                                                "of range or does not match the sample count, or a batch loss is "
                                                "negative")
    # research closures (docs/closure.md)
    CLOSURE_INVALID = ErrorInfo(4001, 422, "the file is not a valid research closure")
    CLOSURE_VERSION = ErrorInfo(4002, 422, "unknown closure format version")
    CLOSURE_MISSING_PART = ErrorInfo(4003, 422, "a part of the closure is missing")
    CLOSURE_TAMPERED = ErrorInfo(4004, 422, "a part of the closure does not match its hash in the manifest")
    CLOSURE_TOO_LARGE = ErrorInfo(4005, 413, "the closure exceeds a size limit (entries, bytes or compression ratio)")
    UNKNOWN_CLOSURE = ErrorInfo(4006, 404, "no stored closure with this id")
    NOT_REPLAYABLE = ErrorInfo(4007, 409, "the closure holds no deterministic record to replay")
    DATA_MISMATCH = ErrorInfo(4008, 422, "the data does not match the closure's data manifest")

    @property
    def number(self) -> int:
        return self.value.number

    @property
    def http_status(self) -> int:
        return self.value.http_status


class MlitbError(Exception):
    """An error with a stable code; `detail` is the specific, human-readable reason."""

    def __init__(self, code: ErrorCode, detail: str | None = None):
        self.code = code
        self.detail = detail or code.value.summary
        super().__init__(f"{code.name}: {self.detail}")

    def to_json(self) -> dict:
        return {"code": self.code.name, "number": self.code.number, "message": self.detail}


# HTTP errors raised by the framework itself (unknown path, method, unparsable request), in the registry's shape
HTTP_CODES = {400: ErrorCode.BAD_REQUEST, 404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED}
SPLITS = ("train", "test")


def check_split(split: str) -> str:
    """`split` if it names one of a project's data splits, else UNKNOWN_SPLIT naming it (the same on every route)."""
    if split not in SPLITS:
        raise MlitbError(ErrorCode.UNKNOWN_SPLIT, f"no data split {split[:40]!r}; a project's splits are "
                         f"{' and '.join(repr(s) for s in SPLITS)}")
    return split


def first_problem(errors: list[dict]) -> tuple[tuple, str]:
    """(location, "where: what") of the first problem a pydantic validation error lists."""
    first = errors[0]
    loc = tuple(p for p in first["loc"] if p != "body")
    return loc, f"{'.'.join(str(p) for p in loc) or 'body'}: {first['msg']}"


def by_number(number: int) -> ErrorCode | None:
    return next((c for c in ErrorCode if c.number == number), None)
