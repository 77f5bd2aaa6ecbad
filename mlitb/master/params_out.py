"""The PARAMS frames of one project: one shared frame per update, dense float32 or a shadow delta.

Under a download codec (mlitb/codec/link.py, `ShadowBroadcast`) a client that holds the previous
broadcast's shadow gets the one shared delta frame (its `aux` names that broadcast's round), and any
other client (just joined, reconnected, missed a frame) the shadow itself as dense float32; which
shadow each client holds is recorded here. Without one, every client gets the dense parameters.

The last RING delta frames are kept (one shadow and at most RING quantised deltas per project, never per
client), each built on the one before: a client whose shadow is a few versions old gets the chain of deltas
since its version, applied one after another as usual (each frame's `aux` is the version the one before it
brings the client to), unless the chain is no smaller than the dense frame. In asynchronous mode (one
dispatch per result, the shadow advanced to the newest version at each dispatch) trainers skip versions
all the time, so this is what lets a download codec work there; a client that already holds the newest
shadow is sent no PARAMS frame at all.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from mlitb.codec.link import DENSE_F32, ShadowBroadcast
from mlitb.protocol import MessageType, encode

RING = 8  # delta frames kept: a client up to this many versions behind gets the chain instead of the dense shadow


class ParamsOut:
    def __init__(self, hyper):
        self._codec = ShadowBroadcast(hyper)
        self._held: dict[int, int] = {}  # client id -> round of the broadcast whose shadow it holds
        self._frames: tuple[bytes, bytes | None, int] = (b"", None, -1)  # this update's (dense, delta, base)
        self._dense: tuple[int, np.ndarray, bytes] | None = None  # (version, parameters, encoded frame)
        self._ring: deque[tuple[int, bytes]] = deque(maxlen=RING)  # (base version, delta frame), consecutive

    @property
    def coded(self) -> bool:
        """Parameters go out through a download codec (a shadow and its deltas)."""
        return self._codec.kind != DENSE_F32

    @property
    def version(self) -> int:
        """The version of the newest shadow (-1 before the first, or after a reset)."""
        return self._codec.round

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
        """This update's frames; returns the values clients will compute on (the shadow, under a codec). A shadow
        advances once per version: async mode's dispatches and its share with the trackers meet at one version."""
        shadow = self._codec.shadow
        if self.coded and shadow is not None and self._codec.round == round and shadow.values.size == params.size:
            return shadow.values
        base = self._codec.round
        payload, values = self._codec.advance(params, round)
        dense = encode(MessageType.PARAMS, project=project, round=round, count=params.size, payload=values)
        delta = None if payload is None else encode(MessageType.PARAMS, project=project, round=round,
                                                    count=params.size, aux=base, payload=payload, kind=self._codec.kind)
        self._frames = (dense, delta, base)
        if delta is None:
            self._ring.clear()  # a dense restart of the shadow: no older version leads to it by deltas
        else:
            self._ring.append((base, delta))
        return values

    def frames_for(self, client_id: int) -> list[bytes]:
        """The frames that bring one client to this update's shadow: none if it holds it, the chain of deltas
        from the version it holds if that is in the ring and the chain is smaller than the dense frame, else
        the dense shadow. Under no codec: the dense frame of the last `start`."""
        dense, _, _ = self._frames
        held = self._held.get(client_id)
        self.mark(client_id)
        if not self.coded:
            return [dense]
        if held == self._codec.round:
            return []
        chain: list[bytes] = []
        for base, frame in self._ring:
            if chain or base == held:
                chain.append(frame)
        return chain if chain and sum(map(len, chain)) < len(dense) else [dense]

    def frame_for(self, client_id: int) -> bytes:
        """This update's frame for one client: the shared delta if it holds the shadow it is built on."""
        dense, delta, base = self._frames
        frame = delta if delta is not None and self._held.get(client_id) == base else dense
        self.mark(client_id)
        return frame

    def mark(self, client_id: int) -> None:
        """The client was sent (or is about to be sent) the shadow of the last broadcast."""
        self._held[client_id] = self._codec.round
