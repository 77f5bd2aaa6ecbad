"""In-process simulated workers over the in-memory transport (tests and simulations).

A `MemoryTrainer` joins a `ProjectRuntime` through a `MemoryLink`, reads the same binary
frames a browser gets, and answers each WORK frame with a gradient from `gradient_fn`
(given the parameters and its allocated ids), encoded and decoded like a real frame.
"""

from __future__ import annotations

import asyncio
from typing import Callable

import numpy as np

from mlitb.errors import MlitbError
from mlitb.master.loop import ProjectRuntime
from mlitb.master.transport import MemoryLink
from mlitb.protocol import MessageType, decode, encode

# (params, allocated ids) -> (summed gradient, samples, summed loss)
GradientFn = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, int, float]]


class MemoryTrainer:
    def __init__(self, runtime: ProjectRuntime, gradient_fn: GradientFn | None, role: str = "trainer",
                 delay_s: float = 0.0, volunteer: str | None = None, address: str | None = None):
        self.runtime = runtime
        self.gradient_fn = gradient_fn
        self.delay_s = delay_s
        self.link = MemoryLink()
        self.client = runtime.add_client(self.link, role, "memory", address, volunteer)
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
                self.params = frame.floats().copy()
            elif frame.type == MessageType.ERROR:
                self.errors.append(frame.json())
            elif frame.type == MessageType.WORK and self.gradient_fn is not None:
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                grad, samples, loss = self.gradient_fn(self.params, self.ids)
                self.send(encode(MessageType.GRADIENT, project=self.runtime.id, round=frame.round, count=samples,
                                 aux=frame.aux, value=loss, payload=grad.astype(np.float32)))
                self.rounds_answered.append(frame.round)

    def send(self, data: bytes) -> MlitbError | None:
        """Deliver a raw frame as the WebSocket handler would; returns the error it raised."""
        try:
            self.runtime.on_frame(self.client.id, decode(data, self.runtime.max_frame_bytes))
        except MlitbError as err:
            self.runtime.note_rejected()
            return err
        return None

    def leave(self) -> None:
        self.runtime.remove_client(self.client.id)
        self.link.close()
