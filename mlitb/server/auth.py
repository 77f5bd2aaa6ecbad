"""Tokens: owner and invite tokens per project, one admin token per server.

Tokens are 256-bit random strings shown once; only their SHA-256 is stored (a fast hash
is enough for high-entropy secrets), and every check compares in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fastapi import Request

from mlitb.errors import ErrorCode, MlitbError


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def matches(token: str | None, stored_hash: str | None) -> bool:
    if not token or not stored_hash:
        return False
    return hmac.compare_digest(token_hash(token), stored_hash)


def bearer(request: Request) -> str | None:
    value = request.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def is_admin(token: str | None, admin_token: str | None) -> bool:
    return bool(token and admin_token and hmac.compare_digest(token.encode(), admin_token.encode()))


def may_use_private(token: str | None, owner_hash: str | None, invite_hash: str | None,
                    admin_token: str | None) -> bool:
    """Whether a token may read or join a private project: its invite token, its owner's or the server admin's."""
    return is_admin(token, admin_token) or matches(token, owner_hash) or matches(token, invite_hash)


def join_check(admin_token: str | None):
    """`may_join(project, token)` of a WebSocket JOIN (mlitb.protocol.session.MayJoin): anyone joins a public
    project; a private one admits the tokens REST accepts for reading it."""
    return lambda runtime, token: (not runtime.spec.private
                                   or may_use_private(token, runtime.owner_hash, runtime.invite_hash, admin_token))


def require(allowed: bool, token: str | None, what: str) -> None:
    """401 without a token, 403 with the wrong one."""
    if allowed:
        return
    if token is None:
        raise MlitbError(ErrorCode.AUTH_REQUIRED, f"{what} needs a bearer token (Authorization: Bearer ...)")
    raise MlitbError(ErrorCode.FORBIDDEN, f"this token may not {what}")


def token_of(request: Request) -> str | None:
    """The request's token: `Authorization: Bearer ...`, else a `token` query parameter."""
    return bearer(request) or request.query_params.get("token")


def require_owner(owner_hash: str | None, request: Request, admin_token: str | None, what: str) -> None:
    token = token_of(request)
    require(is_admin(token, admin_token) or matches(token, owner_hash), token, what)
