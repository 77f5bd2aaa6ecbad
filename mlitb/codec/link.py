"""Both ends of a compressed link, as the project's hyper-parameters configure it; twin of web/src/codec/link.ts.

`Uplink` is a trainer's side of uploads (its error-feedback residual) and `upload_kind`/`decode_upload`
the master's; `ShadowBroadcast` is the master's side of downloads (one shadow per project) and
`Downlink` a client's. Payload kinds are the frame header's `kind` (docs/protocol.md).
"""

from __future__ import annotations

import numpy as np

from mlitb.codec import committed, delta, topk
from mlitb.errors import ErrorCode, MlitbError

DENSE_F32, TOPK_F32, TOPK_Q8, DELTA_Q8, DELTA_Q4, DELTA_Q6Z, DENSE_F32_COMMITTED = 0, 1, 2, 3, 4, 5, 6
UPLOAD_KINDS = {"float32": DENSE_F32, "topk": TOPK_F32, "topk_q8": TOPK_Q8}
DOWNLOAD_KINDS = {"float32": DENSE_F32, "delta_q8": DELTA_Q8, "delta_q4": DELTA_Q4, "delta_q6z": DELTA_Q6Z}
DELTA_BITS = {DELTA_Q8: 8, DELTA_Q4: 4, DELTA_Q6Z: 6}


def max_count(hyper, round: int, length: int) -> int:
    """Most coordinates a sparse upload for `round` may carry (the warm-up allows more early on)."""
    return topk.count_for(topk.density_at(round, hyper.topk_density, hyper.topk_warmup_rounds), length)


def check_upload(kind: int, payload, length: int, hyper, round: int) -> None:
    """The project's upload policy, before the payload kind's codec decodes it: dense float32 is always accepted,
    a sparse kind only when it is the project's upload codec and within the density it allows for `round`
    (a header read, no decoding). Dense with commitments (kind 6) is dense float32 as far as the codec goes."""
    if kind in (DENSE_F32, DENSE_F32_COMMITTED):
        return
    if kind != UPLOAD_KINDS[hyper.upload_codec]:
        raise MlitbError(ErrorCode.CODEC_NOT_ALLOWED, f"payload kind {kind}; this project's upload codec is "
                                                      f"{hyper.upload_codec}")
    k = topk.count_of(payload)
    if k is not None and k > (allowed := max_count(hyper, round, length)):
        raise MlitbError(ErrorCode.CODEC_TOO_DENSE, f"{k} coordinates; this project allows at most {allowed}")


def decode_upload(kind: int, payload, length: int, hyper, round: int) -> np.ndarray:
    """A GRADIENT payload as a dense float32 vector, after the project's upload policy (`check_upload`)."""
    check_upload(kind, payload, length, hyper, round)
    if kind == DENSE_F32:
        if len(payload) != 4 * length:
            raise MlitbError(ErrorCode.WRONG_LENGTH, f"{len(payload)} bytes; expected {4 * length} ({length} float32)")
        return np.frombuffer(payload, dtype="<f4")
    if kind == DENSE_F32_COMMITTED:
        return committed.decode(payload, length)
    return topk.decode(payload, length, max_count(hyper, round, length), quantized=kind == TOPK_Q8)


class Uplink:
    """A trainer's encoder: dense as is, or top-k of (residual + result) with the rest kept for later rounds."""

    def __init__(self, hyper, length: int):
        self.hyper = hyper
        self.kind = UPLOAD_KINDS[hyper.upload_codec]
        self.feedback = topk.ErrorFeedback(length)

    def encode(self, result: np.ndarray, round: int) -> tuple[int, bytes]:
        if self.kind == DENSE_F32:
            return DENSE_F32, result.astype("<f4").tobytes()
        k = max_count(self.hyper, round, result.size)
        if self.feedback.residual.size != result.size:  # the model grew: the old residual no longer lines up
            self.feedback.reset(result.size)
        acc = self.feedback.residual + result.astype(np.float32, copy=False)
        payload, idx, sent = topk.encode(acc, k, quantized=self.kind == TOPK_Q8)
        if len(payload) >= 4 * acc.size:  # no smaller than dense (a high density): send all of it, keep nothing
            self.feedback.reset(acc.size)
            return DENSE_F32, acc.astype("<f4").tobytes()
        acc[idx] -= sent  # exact in float32 (topk.ErrorFeedback): sent + residual == acc
        self.feedback.residual = acc
        return self.kind, payload


class ShadowBroadcast:
    """The master's download side: one shared frame per round, and who holds which shadow."""

    def __init__(self, hyper):
        self.kind = DOWNLOAD_KINDS[hyper.download_codec]
        self.shadow: delta.Shadow | None = None
        self.round = -1  # round of the last broadcast; clients whose shadow is of that round get the delta

    def reset(self) -> None:
        """The parameters were replaced (upload, growth, restore): everyone gets a dense frame next."""
        self.shadow, self.round = None, -1

    def advance(self, params: np.ndarray, round: int) -> tuple[bytes | None, np.ndarray]:
        """(the delta payload, or None when every client needs the dense shadow; the shadow after it)."""
        if self.kind == DENSE_F32:
            return None, params
        if self.shadow is None or self.shadow.values.size != params.size:
            self.shadow, self.round = delta.Shadow(params), round
            return None, self.shadow.values
        payload = self.shadow.advance(params, DELTA_BITS[self.kind])
        self.round = round
        return payload, self.shadow.values


class Downlink:
    """A client's parameters: replaced by a dense PARAMS frame, advanced by a delta frame built on the round it holds."""

    def __init__(self):
        self.params: np.ndarray | None = None
        self.round = -1

    def apply(self, kind: int, payload, round: int, base_round: int, count: int) -> np.ndarray:
        """`count` is the PARAMS header's parameter count."""
        if kind == DENSE_F32:
            if len(payload) != 4 * count:
                raise MlitbError(ErrorCode.WRONG_LENGTH, f"{len(payload)} bytes for {count} float32")
            self.params = np.frombuffer(payload, dtype="<f4").copy()
        elif kind in DELTA_BITS:
            if self.params is None or base_round != self.round:
                raise MlitbError(ErrorCode.CODEC_NOT_ALLOWED, f"delta built on round {base_round}; this client holds "
                                                              f"round {self.round}")
            self.params += delta.decode(payload, self.params.size, DELTA_BITS[kind])
        else:
            raise MlitbError(ErrorCode.CODEC_NOT_ALLOWED, f"payload kind {kind} is not a parameter encoding")
        self.round = round
        return self.params
