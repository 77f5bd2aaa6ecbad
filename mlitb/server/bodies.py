"""Request bodies under a size cap: the declared length is checked before anything is read, and the
streamed bytes as they arrive (a chunked body declares none), so an oversized body is never held."""

from __future__ import annotations

from typing import AsyncIterator

from fastapi import Request

from mlitb.errors import ErrorCode, MlitbError


async def capped_chunks(request: Request, cap: int, code: ErrorCode, what: str) -> AsyncIterator[bytes]:
    """The body's chunks; MlitbError(`code`) as soon as it is known to exceed `cap` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > cap:
        raise MlitbError(code, f"{what} of {declared} bytes; at most {cap}")
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise MlitbError(code, f"{what} of more than {cap} bytes; at most {cap}")
        yield chunk


async def read_capped(request: Request, cap: int, code: ErrorCode, what: str) -> bytes:
    """The whole body, at most `cap` bytes."""
    return b"".join([chunk async for chunk in capped_chunks(request, cap, code, what)])
