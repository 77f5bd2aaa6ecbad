"""The one line a command prints when it cannot reach a server (instead of an httpx traceback)."""

from __future__ import annotations

import sys

EXIT_UNREACHABLE = 2  # every `mlitb` command that talks to a server exits with this when it cannot reach it


def unreachable_line(exc: BaseException) -> str | None:
    """One line naming the server for a transport failure of httpx ("error: cannot reach URL: reason" when no
    connection could be made, refused or name not found; "no answer ... in time" or "the connection ... failed"
    after one was), or None for any other exception. httpx is looked up, not imported: a command that
    never loaded it cannot have raised one of its errors."""
    httpx = sys.modules.get("httpx")
    if httpx is None or not isinstance(exc, httpx.TransportError):
        return None
    try:
        url = exc.request.url
        where = f"{url.scheme}://{url.netloc.decode()}"
    except RuntimeError:  # an error raised without its request
        where = "the server"
    reason = str(exc).strip() or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
        return f"error: no answer from {where} in time: {reason}"
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        return f"error: cannot reach {where}: {reason}"
    return f"error: the connection to {where} failed: {reason}"
