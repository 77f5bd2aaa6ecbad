"""The PARAMS frames of one project: one shared frame per update, dense float32 or a shadow delta.

Under a download codec (mlitb/codec/link.py, `ShadowBroadcast`) a client that holds the previous
broadcast's shadow gets the one shared delta frame (its `aux` names that broadcast's round), and any
other client (just joined, reconnected, missed a frame) the shadow itself as dense float32; which
shadow each client holds is recorded here. Without one, every client gets the dense parameters.
"""

from __future__ import annotations

import numpy as np

from mlitb.codec.link import ShadowBroadcast
from mlitb.protocol import MessageType, encode


class ParamsOut:
    def __init__(self, hyper):
        self._codec = ShadowBroadcast(hyper)
        self._held: dict[int, int] = {}  # client id -> round of the broadcast whose shadow it holds
        self._frames: tuple[bytes, bytes | None, int] = (b"", None, -1)  # this update's (dense, delta, base)
        self._dense: tuple[int, np.ndarray, bytes] | None = None  # (version, parameters, encoded frame)

    @property
    def shadow(self) -> np.ndarray | None:
        """What clients hold under a download codec (None before the first broadcast, or without a codec)."""
        return None if self._codec.shadow is None else self._codec.shadow.values

    def reset(self) -> None:
        """The parameters were replaced (weights upload, growth, restore): every client gets them dense next."""
        self._codec.reset()

    def forget(self, client_id: int) -> None:
        self._held.pop(client_id, None)

    def dense(self, project: int, round: int, params: np.ndarray) -> bytes:
        """A dense frame of what clients hold now: the shadow of the last broadcast; else the parameters of this
        version, encoded once and shared by every send of it (parameters are replaced, never written in place)."""
        if self._codec.shadow is None:
            cached = self._dense
            if cached is None or cached[0] != round or cached[1] is not params:
                frame = encode(MessageType.PARAMS, project=project, round=round, count=params.size, payload=params)
                cached = self._dense = (round, params, frame)
            return cached[2]
        return encode(MessageType.PARAMS, project=project, round=self._codec.round, count=params.size,
                      payload=self._codec.shadow.values)

    def start(self, project: int, round: int, params: np.ndarray) -> np.ndarray:
        """This update's frames; returns the values clients will compute on (the shadow, under a codec)."""
        base = self._codec.round
        payload, values = self._codec.advance(params, round)
        dense = encode(MessageType.PARAMS, project=project, round=round, count=params.size, payload=values)
        delta = None if payload is None else encode(MessageType.PARAMS, project=project, round=round,
                                                    count=params.size, aux=base, payload=payload, kind=self._codec.kind)
        self._frames = (dense, delta, base)
        return values

    def frame_for(self, client_id: int) -> bytes:
        """This update's frame for one client: the shared delta if it holds the shadow it is built on."""
        dense, delta, base = self._frames
        frame = delta if delta is not None and self._held.get(client_id) == base else dense
        self.mark(client_id)
        return frame

    def mark(self, client_id: int) -> None:
        """The client was sent (or is about to be sent) the shadow of the last broadcast."""
        self._held[client_id] = self._codec.round
