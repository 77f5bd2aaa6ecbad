"""Simulated trainers that find a gateway and fail over: `mlitb simulate`'s fleet (workers/sim_fleet.py) spread over
a cluster's gateways. Each client starts on gateway (slot mod G); when its connection is lost (a gateway killed) it
asks a live gateway's GET /api/gateways and reconnects to the least loaded one it can reach, at once."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlparse

import httpx

from mlitb.workers.gateways import ranked
from mlitb.workers.sim_fleet import Fleet, FleetSpec, SimClient

RETRY_S = 0.3  # pause between attempts when no gateway answered


class FailoverClient(SimClient):
    def connection_lost(self, exc) -> None:
        super().connection_lost(exc)
        if not self.fleet.stopping and not self.close_sent:
            self.fleet.lost_at[self.slot] = time.monotonic()
            asyncio.ensure_future(self.fleet.connect(self.slot))


class ClusterFleet(Fleet):
    def __init__(self, spec: FleetSpec, gateways: list[str], index: int = 0):
        super().__init__(spec, index)
        self.gateways = list(gateways)
        self.target: dict[int, str] = {}  # slot -> the gateway URL it is connected to
        self.lost_at: dict[int, float] = {}
        self.failover_s: list[float] = []  # per reconnect after a loss: seconds until WELCOME again

    async def _ranked(self) -> list[str]:
        """Gateways least loaded first, as any reachable gateway lists them; the known list if none answers."""
        async with httpx.AsyncClient(timeout=2.0) as http:
            for url in list(self.gateways):
                try:
                    listed = (await http.get(f"{url}/api/gateways")).json()
                except (httpx.HTTPError, ValueError):
                    continue
                found = ranked(url, listed)  # only what workers follow (mlitb/workers/gateways.py)
                if found:
                    self.gateways = found
                    return self.gateways
        return self.gateways

    async def connect(self, slot: int) -> None:
        lost = slot in self.lost_at
        ranked = (await self._ranked()) if lost else [self.gateways[slot % len(self.gateways)]]
        while not self.stopping:
            for url in ranked:
                if lost and url == self.target.get(slot) and len(ranked) > 1:
                    continue  # not back to the gateway that just went away while another is listed
                u = urlparse(url)
                async with self._gate:  # as many handshakes at once as the plain fleet (N = 128 all at once timed out)
                    opened = await self.open(slot, u.hostname, u.port, 10, FailoverClient)
                if not opened:
                    continue
                self.target[slot] = url
                if lost:
                    self.reconnects += 1
                    self.failover_s.append(time.monotonic() - self.lost_at.pop(slot))
                return
            await asyncio.sleep(RETRY_S)
            ranked = await self._ranked()

    def on(self, url: str) -> int:
        """Clients connected to gateway `url` now."""
        return sum(1 for s, u in self.target.items() if u == url and self.clients[s] is not None
                   and not self.clients[s].closed)
