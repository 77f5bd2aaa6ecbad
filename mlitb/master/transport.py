"""How the round loop reaches clients: a `Link` per client, with a real and an in-memory twin.

The loop only ever calls `send` (never blocks: frames are queued and written by the
link's own writer) and `close`. WebSocket links live in mlitb.server.ws; the in-memory
link here is what unit tests and simulations use.
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class Link(Protocol):
    def send(self, frame: bytes) -> bool:
        """Queue a frame; False if the client is too far behind (the loop then drops it)."""

    def close(self, code: int = 1000, reason: str = "") -> None: ...


class MemoryLink:
    """A link whose frames land in an asyncio queue that an in-process client reads."""

    def __init__(self, max_queue: int = 64):
        self.inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.max_queue = max_queue
        self.closed: tuple[int, str] | None = None

    def send(self, frame: bytes) -> bool:
        if self.closed:
            return False
        if self.inbox.qsize() >= self.max_queue:
            return False
        self.inbox.put_nowait(frame)
        return True

    def close(self, code: int = 1000, reason: str = "") -> None:
        if not self.closed:
            self.closed = (code, reason)
            self.inbox.put_nowait(None)
