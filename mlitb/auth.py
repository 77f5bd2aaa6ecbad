"""Tokens and the one access check: owner and invite tokens per project, one admin token per server.

Tokens are 256-bit random strings shown once; only their SHA-256 is stored (a fast hash is enough for
high-entropy secrets), and every check compares in constant time. `allows` is the only place that decides
who may do what; REST routes (server/auth.py), the data server and the WebSocket JOIN all call it. This
module imports nothing of the server, so any layer may use it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Literal

from mlitb.errors import ErrorCode, MlitbError

Need = Literal["read", "own", "admin"]
READ: Need = "read"  # read or join a project (anyone for a public one; invite, owner or admin for a private one)
OWN: Need = "own"  # change or delete a project: its owner or the admin
ADMIN: Need = "admin"  # the server's admin only


def new_token() -> str:
    """43 URL-safe characters (256 random bits) that never start with '-': a command line would take such a
    token for an option (`--token -x…` fails; one in 64 tokens did)."""
    while (token := secrets.token_urlsafe(32)).startswith("-"):
        pass
    return token


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def matches(token: str | None, stored_hash: str | None) -> bool:
    if not token or not stored_hash:
        return False
    return hmac.compare_digest(token_hash(token), stored_hash)


def is_admin(token: str | None, admin_token: str | None) -> bool:
    return bool(token and admin_token and hmac.compare_digest(token.encode(), admin_token.encode()))


def allows(token: str | None, need: Need, *, admin_token: str | None, owner_hash: str | None = None,
           invite_hash: str | None = None, private: bool = False) -> bool:
    """Whether `token` may do what needs `need` on a project (or closure) with these hashes."""
    if is_admin(token, admin_token):
        return True
    if need == ADMIN:
        return False
    if matches(token, owner_hash):
        return True
    if need == OWN:
        return False
    return not private or matches(token, invite_hash)


def require(token: str | None, need: Need, what: str, *, admin_token: str | None, owner_hash: str | None = None,
            invite_hash: str | None = None, private: bool = False) -> None:
    """`allows`, or MlitbError: AUTH_REQUIRED without a token, FORBIDDEN with the wrong one. `what` completes
    "... needs a token" / "this token may not ..."."""
    if allows(token, need, admin_token=admin_token, owner_hash=owner_hash, invite_hash=invite_hash, private=private):
        return
    if token is None:
        raise MlitbError(ErrorCode.AUTH_REQUIRED, f"{what} needs a bearer token (Authorization: Bearer ...)")
    raise MlitbError(ErrorCode.FORBIDDEN, f"this token may not {what}")


def join_check(admin_token: str | None):
    """`may_join(project, token)` of a WebSocket JOIN (or a protocol session): the tokens REST accepts for reading."""
    return lambda project, token: allows(token, READ, admin_token=admin_token, owner_hash=project.owner_hash,
                                         invite_hash=project.invite_hash, private=project.spec.private)


def token_of(request) -> str | None:
    """An HTTP request's token: `Authorization: Bearer ...`, else a `token` query parameter (which the
    server's logs redact; server/logs.py). Any object with Starlette's `headers` and `query_params`."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.query_params.get("token") or None
