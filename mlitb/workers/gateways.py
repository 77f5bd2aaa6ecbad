"""Finding a gateway (`mlitb serve --ray`): which of the listed gateways a worker connects to, and where it goes when
its gateway goes away. The twin of the page's web/src/worker/gateways.ts.

A cluster's gateways answer GET /api/gateways with their URLs, least loaded first. A worker asks the server it was
given, connects to the least loaded gateway (or the `slot`-th, so the trainers of one command spread over them), and
after its connection is lost asks again (any gateway it knows) and takes the least loaded one other than the one
that went away. A single-process server has no /api/gateways (404): the worker then stays on that server, exactly
as before, and never asks again.

What a listed URL may be (the list comes from the server the user opened, which already chooses the model and data
URLs a worker follows, so limiting hosts would protect nothing while breaking clusters spread over several hosts):
http or https only, https only when the server given was https (no downgrade), an origin only (no user name or
password, path, query or fragment); at most MAX_LISTED entries are read. Anything else is skipped.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx

MAX_LISTED = 64  # entries of one /api/gateways answer looked at
LIST_TIMEOUT_S = 2.0  # a gateway that does not answer this fast is taken as gone


def gateway_origin(server: str, url: object) -> str | None:
    """`url` as `scheme://host[:port]` if a worker that opened `server` may follow it, else None."""
    if not isinstance(url, str) or len(url) > 2048:
        return None
    try:
        u, s = urlsplit(url), urlsplit(server)
        u.port  # noqa: B018 (raises ValueError on a port out of range)
    except ValueError:
        return None
    if u.scheme not in ("http", "https") or (s.scheme == "https" and u.scheme != "https"):
        return None
    if not u.hostname or u.username is not None or u.password is not None or u.path not in ("", "/") \
            or u.query or u.fragment:
        return None
    return f"{u.scheme}://{u.netloc}"


def ranked(server: str, listed: object) -> list[str]:
    """The followable gateways of one /api/gateways answer, in its order (least loaded first)."""
    if not isinstance(listed, list):
        return []
    out: list[str] = []
    for g in listed[:MAX_LISTED]:
        origin = gateway_origin(server, g.get("url") if isinstance(g, dict) else None)
        if origin and origin not in out:
            out.append(origin)
    return out


class GatewayChooser:
    """Where one worker connects: `await choose(http)` before each connection."""

    def __init__(self, server: str, slot: int = 0):
        self.server = server.rstrip("/")
        self.slot = slot
        self.known = [self.server]  # gateways to ask, newest answer first; the server given is kept last
        self.clustered: bool | None = None  # None: not asked yet; False: a single process (no /api/gateways)
        self.current = self.server
        self.first = True

    async def _list(self, http: httpx.AsyncClient) -> list[str]:
        """The newest list any known gateway gives; [] when none answers one."""
        for url in list(self.known):
            try:
                res = await http.get(f"{url}/api/gateways", timeout=LIST_TIMEOUT_S)
            except httpx.HTTPError:
                continue
            if res.status_code == 404 and url == self.server and self.clustered is None:
                self.clustered = False  # a single-process server: as before, no gateway list
                return []
            if res.status_code != 200:
                continue
            try:
                found = ranked(self.server, res.json())
            except ValueError:
                continue
            if found:
                self.clustered = True
                self.known = found + [u for u in self.known if u not in found]
                return found
        return []

    async def choose(self, http: httpx.AsyncClient) -> str:
        """The gateway for the next connection: the `slot`-th least loaded for the first, then (after a connection
        ended or failed) the least loaded other than the current one, or the current one if it is the only one."""
        if self.clustered is False:
            return self.current
        first, self.first = self.first, False
        listed = await self._list(http)
        if not listed:  # nobody answered a list: try the other gateways known, in turn
            others = [u for u in self.known if u != self.current]
            pick = self.current if first or not others else others[0]
        elif first:
            pick = listed[self.slot % len(listed)]
        else:
            pick = next((u for u in listed if u != self.current), listed[0])
        self.current = pick
        return pick
