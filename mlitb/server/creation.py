"""Per-address limits on creating projects: a rate (creations in a sliding window) and a total (projects an
address keeps at once). The admin token is exempt. An address is an IPv4 address or an IPv6 /64, the
smallest block one subscriber usually holds (a per-address limit on single IPv6 addresses limits nothing)."""

from __future__ import annotations

import ipaddress
import math
import time
from collections import deque

from fastapi import Request

from mlitb.config import Settings
from mlitb.errors import ErrorCode, MlitbError
from mlitb.server import auth

PRUNE_AT = 10_000  # addresses remembered before the idle ones are forgotten


def address_key(host: str | None) -> str:
    """The address a limit counts against: IPv4 as is, IPv6 as its /64, an IPv4-mapped IPv6 as the IPv4."""
    try:
        ip = ipaddress.ip_address(host or "")
    except ValueError:
        return host or "unknown"
    if ip.version == 6:
        if ip.ipv4_mapped:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class CreationLimits:
    """`admit(request)` before creating (raises when a limit is hit), `record(address, id)` after."""

    def __init__(self, settings: Settings, count_created_by, set_creator, clock=time.monotonic):
        self.settings = settings
        self.count_created_by = count_created_by  # address -> projects it created that still exist (SQLite)
        self.set_creator = set_creator  # (project id, address): remembered with the project
        self.clock = clock
        self._recent: dict[str, deque[float]] = {}

    def admit(self, request: Request, project: bool = True) -> str | None:
        """The address to record the creation under, None for the admin. `project`: False for creations that
        are not projects (zoo uploads), which count towards the rate only."""
        s = self.settings
        if auth.is_admin_request(request):
            return None
        address = address_key(request.client.host if request.client else None)
        now = self.clock()
        recent = self._recent.get(address, deque())
        while recent and recent[0] <= now - s.creation_window_s:
            recent.popleft()
        if len(recent) >= s.creations_per_window:
            wait = math.ceil(recent[0] + s.creation_window_s - now)
            raise MlitbError(ErrorCode.CREATION_RATE_LIMITED, f"{address} created {len(recent)} projects or closures "
                             f"in the last {s.creation_window_s:g} s; at most {s.creations_per_window}; try again in "
                             f"{wait} s")
        if project:
            kept = self.count_created_by(address)
            if kept >= s.max_projects_per_address:
                raise MlitbError(ErrorCode.TOO_MANY_PROJECTS, f"{address} keeps {kept} projects; at most "
                                 f"{s.max_projects_per_address} per address: delete one first")
        return address

    def record(self, address: str | None, project_id: int | None = None) -> None:
        if address is None:
            return
        now = self.clock()
        if len(self._recent) >= PRUNE_AT:
            self._recent = {a: q for a, q in self._recent.items() if q and q[-1] > now - self.settings.creation_window_s}
        self._recent.setdefault(address, deque()).append(now)
        if project_id is not None:
            self.set_creator(project_id, address)
