"""A project's definition (name, network, hyper-parameters, data set) as validated by the server."""

from __future__ import annotations

import copy
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mlitb.errors import ErrorCode, MlitbError, first_problem
from mlitb.model import Network, parse_network


class Hyper(BaseModel):
    """Training hyper-parameters; L1/L2 and AdaGrad run on the server. Strict: a JSON string such as "4" or
    "yes" is refused, never converted (an integer is still a number). docs/hyper.md is generated from this
    model (mlitb/master/hyper_docs.py); a test fails until it is regenerated after a change here."""

    model_config = ConfigDict(extra="forbid", strict=True)
    period_s: float = Field(4.0, ge=1, le=60, description="round duration T in seconds (over 30 only for local_sgd, "
                                                          "whose trainers take many steps between synchronisations)")
    learning_rate: float = Field(0.01, gt=0, le=10, description="AdaGrad learning rate")
    epsilon: float = Field(1e-8, gt=0, le=1, description="AdaGrad epsilon")
    l1: float = Field(0.0, ge=0, le=1, description="L1 decay")
    l2: float = Field(0.0, ge=0, le=1, description="L2 decay")
    dropout: float = Field(0.5, ge=0, lt=1, description="rate of dropout layers that give none")
    batch_size: int = Field(32, ge=1, le=4096, description="trainer mini-batch; samples per round are clock-bounded")
    aggregation: Literal["centered_clip", "mean", "clipped_mean", "median", "trimmed_mean"] = Field(
        "centered_clip", description="how a round's gradients are combined: by default each client's deviation from "
                                     "the coordinate-wise median is clipped to the round's median deviation (robust to "
                                     "a minority of hostile clients, no threshold to tune); 'mean' is the fast "
                                     "sample-weighted mean, for trusted trainers only; other robust rules: norm-clipped "
                                     "mean, coordinate-wise median, coordinate-wise trimmed mean")
    clip_norm: float = Field(1.0, gt=0, le=1e6, description="clipped_mean: largest L2 norm of one client's "
                                                             "per-sample mean gradient")
    trim_fraction: float = Field(0.2, ge=0, lt=0.5, description="trimmed_mean: fraction of clients dropped at each "
                                                                "end, per coordinate")
    late_policy: Literal["drop", "stale_weighted"] = Field(
        "drop", description="a gradient that arrives after its round closed: 'drop' refuses it (STALE_ROUND); "
                            "'stale_weighted' adds it to the open round with its share scaled by staleness_weight "
                            "per round late. Counted as late either way")
    staleness_weight: float = Field(0.5, gt=0, le=1, description="stale_weighted: factor on a late gradient's "
                                                                 "share per round late")
    deterministic: bool = Field(False, description="replayable rounds (docs/closure.md): the master names each "
                                                   "trainer's examples every round (a seeded draw of "
                                                   "samples_per_round from its allocation) and records them")
    spot_checks: bool = Field(True, description="verify a random share of results by recomputing them on the master "
                                                "(every layer type but dropout above rate 0; mlitb/trust/spot_check.py): trainers follow the "
                                                "example order seeded in WORK and commit to each batch (a check then "
                                                "recomputes one batch); fakers get strikes and quarantine")
    samples_per_round: int = Field(64, ge=1, le=4096, description="deterministic: examples per trainer and round")
    mode: Literal["sync", "async"] = Field(
        "sync", description="'sync': time-boxed rounds with a barrier (MLitB); 'async': no barrier, every trainer "
                            "loops on its own clock and an update is applied every buffer_size results (FedBuff). "
                            "Fixed at creation")
    buffer_size: int = Field(4, ge=1, le=4096, description="async: results per update (FedBuff's K; at most the number of "
                                                                 "connected trainers; bench/async.py, 16 trainers: K = 16 "
                                                                 "reached the target soonest, K = 4 and 8 later)")
    staleness: Literal["inverse_sqrt", "constant", "hinge"] = Field(
        "inverse_sqrt", description="async: weight of a result computed s versions ago: 1/sqrt(1+s), 1, or "
                                    "1 up to 'hinge_after' versions then 1/(1+s-hinge_after)")
    hinge_after: int = Field(4, ge=0, le=1000, description="async, staleness 'hinge': versions late at full weight")
    max_staleness: int = Field(32, ge=0, le=10000, description="async: a result more versions late than this is "
                                                                "refused (TOO_STALE) and counted")

    # communication (docs/protocol.md "Payload kinds"); fixed at creation, like the network
    upload_codec: Literal["float32", "topk", "topk_q8"] = Field(
        "float32", description="how trainers send results: dense float32, or the top-k share of coordinates with "
                               "error feedback (values float32, or 8-bit with per-block scales)")
    topk_density: float = Field(0.01, gt=0, le=1, description="topk, topk_q8: share of coordinates sent per round")
    topk_warmup_rounds: int = Field(0, ge=0, le=100_000, description="topk: DGC warm-up, density 0.25 falling by "
                                                                       "quarters to topk_density over these rounds "
                                                                       "(measured: helps the early rounds, most at "
                                                                       "low densities)")
    download_codec: Literal["float32", "delta_q8", "delta_q4", "delta_q6z"] = Field(
        "float32", description="how parameters reach clients: dense float32, or the 8/4-bit quantised change of a "
                               "shadow copy every client holds (a joining client gets the shadow in float32); "
                               "delta_q6z: 63 levels, deflated (~9x smaller than float32)")
    algorithm: Literal["gradient", "local_sgd"] = Field(
        "gradient", description="'gradient': trainers send summed gradients for the server's AdaGrad step; "
                                "'local_sgd': trainers take inner steps on their own copy and send the change, "
                                "which the server applies with Nesterov momentum (DiLoCo)")
    inner_optimizer: Literal["sgd", "adam"] = Field("sgd", description="local_sgd: the trainers' inner optimizer")
    inner_lr: float = Field(0.05, gt=0, le=10, description="local_sgd: inner learning rate")
    outer_lr: float = Field(0.7, gt=0, le=10, description="local_sgd: outer (server) learning rate")
    outer_momentum: float = Field(0.9, ge=0, lt=1, description="local_sgd: outer Nesterov momentum")

    @model_validator(mode="after")
    def _long_rounds_are_local(self) -> "Hyper":
        if self.period_s > 30 and self.algorithm != "local_sgd":
            raise ValueError(f"period_s {self.period_s} over 30 s needs algorithm local_sgd")
        return self

    @model_validator(mode="after")
    def _async_is_buffered_gradients(self) -> "Hyper":
        if self.mode == "async" and self.deterministic:
            raise ValueError("deterministic replay needs mode 'sync': asynchronous updates depend on arrival order")
        if self.mode == "async" and self.algorithm != "gradient":
            raise ValueError("mode 'async' needs algorithm 'gradient' (buffered results are gradients)")
        return self


class ProjectSpec(BaseModel):
    """Body of POST /api/projects (strict, as `Hyper`)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(min_length=1, max_length=100)
    dataset: str | None = Field(None, description="built-in data set ('mnist'), or none until data is uploaded")
    network: list[dict[str, Any]] = Field(min_length=1, max_length=64)
    hyper: Hyper = Field(default_factory=Hyper)
    seed: int = Field(0, ge=0, le=2**31 - 1, description="seed of the initial weights")
    private: bool = Field(False, description="joining and reading need the invite token returned at creation")
    max_trainers_per_address: int | None = Field(None, ge=1, le=1024, description="trainers from one IP address in "
                                                 "this project; at most the server's limit (None: the server's)")

    def build_network(self) -> Network:
        layers = copy.deepcopy(self.network)
        for layer in layers:
            if layer.get("type") == "dropout" and "rate" not in layer:
                layer["rate"] = self.hyper.dropout
        return parse_network(layers)


def parse_project_spec(body: Any) -> ProjectSpec:
    try:
        return ProjectSpec.model_validate(body)
    except ValidationError as exc:
        loc, message = first_problem(exc.errors())
        raise MlitbError(ErrorCode.INVALID_HYPER if loc[:1] == ("hyper",) else ErrorCode.INVALID_REQUEST, message) from None
