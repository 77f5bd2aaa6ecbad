"""Schemas of the JSON bodies of control frames (JOIN, WELCOME, ERROR); hot-path frames are binary."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlitb.errors import ErrorCode, MlitbError, first_problem


class JoinRequest(BaseModel):
    """Sent by a worker right after connecting; the project id is in the frame header."""

    model_config = ConfigDict(extra="forbid")
    role: Literal["trainer", "tracker"]
    backend: str = Field(default="unknown", max_length=64)
    agent: str = Field(default="", max_length=256)
    token: str | None = Field(default=None, max_length=128, description="invite (or owner) token of a private project")
    pow: str | None = Field(default=None, max_length=200, description="proof of work '<challenge>:<nonce>' "
                                                                      "(mlitb/trust/pow.py), when the address needs one")
    volunteer: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{16,128}$",
                                  description="the volunteer's secret key (kept by the browser): credit goes to its "
                                              "public id, the first 16 hex digits of its SHA-256 (mlitb/trust/credit.py)")


class DataInfo(BaseModel):
    version: str  # content hash: a client may reuse cached examples of the same version
    # examples are only ever appended while this stays the same: a client keeps the examples it
    # holds (ids keep their content) and fetches only new ids
    base_version: str
    train_url: str
    test_url: str | None
    shape: list[int]
    num_classes: int
    train_count: int
    test_count: int
    labels: list[str]


class Welcome(BaseModel):
    client_id: int
    role: str
    project_id: int
    name: str
    param_count: int
    period_s: float
    batch_size: int
    model_url: str
    data: DataInfo | None
    # communication (docs/protocol.md "Payload kinds"); fixed for a project's life
    upload_codec: str = "float32"
    topk_density: float = 0.01
    topk_warmup_rounds: int = 0
    download_codec: str = "float32"
    algorithm: str = "gradient"
    inner_optimizer: str = "sgd"
    inner_lr: float = 0.05
    volunteer: str | None = None  # the public id credit goes to (None: joined without a volunteer key)


def parse_join(body: dict) -> JoinRequest:
    try:
        return JoinRequest.model_validate(body)
    except ValidationError as exc:
        raise MlitbError(ErrorCode.FRAME_MALFORMED, f"JOIN {first_problem(exc.errors())[1]}") from None
