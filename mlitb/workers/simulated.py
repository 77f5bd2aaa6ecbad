"""In-process simulated workers over the in-memory transport (tests and simulations).

A `MemoryTrainer` connects to a `ProjectRuntime` through a `MemoryLink` and the same sans-I/O
`ClientSession` the WebSocket endpoint uses: it JOINs with a real JOIN frame, reads the same
binary frames a browser gets, and answers each WORK frame with a gradient from `gradient_fn`
(given the parameters and its allocated ids), encoded and fed to its session like a real message,
in the project's payload kinds (mlitb/codec/link.py: top-k uploads with error feedback,
shadow-delta downloads). Under `algorithm: "local_sgd"` it takes `local_steps` plain SGD steps of
`inner_lr` on its own copy, one `gradient_fn` call each, and sends samples x (start - end).
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable

import numpy as np

from mlitb.codec import Kind, committed
from mlitb.codec.link import Downlink, Uplink
from mlitb.errors import ErrorCode, MlitbError
from mlitb.master.loop import ProjectRuntime
from mlitb.master.transport import MemoryLink
from mlitb.protocol import MessageType, decode, encode
from mlitb.protocol.session import ClientSession
from mlitb.auth import join_check

# (params, allocated ids) -> (summed gradient, samples, summed loss)
# (params, held ids) -> (summed gradient, samples, loss), and optionally its commitments (sent as payload kind 6)
GradientFn = Callable[[np.ndarray, np.ndarray], tuple]


def only(runtime: ProjectRuntime):
    """A session's project lookup that knows one runtime (ProjectRegistry.get's contract)."""
    def find(project_id: int) -> ProjectRuntime:
        if project_id != runtime.id:
            raise MlitbError(ErrorCode.UNKNOWN_PROJECT, f"no project {project_id}")
        return runtime
    return find


def memory_session(runtime: ProjectRuntime, link: MemoryLink, clock=time.monotonic,
                   address: str | None = None) -> ClientSession:
    """A session as the WebSocket endpoint makes one, reaching only `runtime` (from `address`: None is in memory)."""
    settings = runtime.settings
    return ClientSession(link, settings, only(runtime), join_check(settings.admin_token), clock=clock, address=address)


class MemoryTrainer:
    def __init__(self, runtime: ProjectRuntime, gradient_fn: GradientFn | None, role: str = "trainer",
                 delay_s: float = 0.0, token: str | None = None, clock=time.monotonic, local_steps: int = 4,
                 volunteer: str | None = None, address: str | None = None):
        self.runtime = runtime
        self.gradient_fn = gradient_fn
        self.delay_s = delay_s
        self.local_steps = local_steps
        self.downlink = Downlink()
        self.uplink = Uplink(runtime.spec.hyper, runtime.param_count)
        self.link = MemoryLink()
        self.session = memory_session(runtime, self.link, clock, address)
        join = {"role": role, "backend": "memory", **({"token": token} if token else {}),
                **({"volunteer": volunteer} if volunteer else {})}
        err = self.session.receive(encode(MessageType.JOIN, project=runtime.id, payload=join))
        if err is not None:
            raise err
        self.client = self.session.client
        self.ids = np.zeros(0, dtype=np.uint32)
        self.params: np.ndarray | None = None
        self.rounds_answered: list[int] = []
        self.errors: list[dict] = []
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while (data := await self.link.inbox.get()) is not None:
            frame = decode(data, 1 << 30)
            if frame.type == MessageType.ALLOC:
                self.ids = frame.uint32s().copy()
            elif frame.type == MessageType.PARAMS:
                self.params = self.downlink.apply(frame.kind, frame.payload, frame.round, frame.aux, frame.count)
            elif frame.type == MessageType.ERROR:
                self.errors.append(frame.json())
            elif frame.type == MessageType.WORK and self.gradient_fn is not None:
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                grad, samples, loss, *commitment = self._result()
                kind, payload = self.uplink.encode(grad.astype(np.float32), frame.round)
                if commitment and commitment[0] is not None and kind == Kind.DENSE_F32:  # kind 6: with its commitments
                    kind, payload = Kind.DENSE_F32_COMMITTED, committed.encode(grad, commitment[0])
                self.send(encode(MessageType.GRADIENT, project=self.runtime.id, round=frame.round, count=samples,
                                 aux=frame.aux, value=loss, payload=payload, kind=kind))
                self.rounds_answered.append(frame.round)

    def _result(self) -> tuple[np.ndarray, int, float]:
        hyper = self.runtime.spec.hyper
        if hyper.algorithm != "local_sgd":
            return self.gradient_fn(self.params, self.ids)
        local, samples, loss = self.params.copy(), 0, 0.0
        for _ in range(self.local_steps):
            grad, n, step_loss = self.gradient_fn(local, self.ids)
            local -= np.float32(hyper.inner_lr / n) * grad.astype(np.float32)
            samples, loss = samples + n, loss + step_loss
        return (self.params - local) * np.float32(samples), samples, loss

    def send(self, data: bytes) -> MlitbError | None:
        """Deliver a raw message through the session, as the WebSocket endpoint does; returns the error it
        was refused with (also answered with an ERROR frame)."""
        return self.session.receive(data)

    def leave(self) -> None:
        """LEAVE, then drop the connection (as a browser closing its socket does)."""
        if not self.session.closed:
            self.session.receive(encode(MessageType.LEAVE, project=self.runtime.id))
        self.session.connection_lost()
        self.link.close()
