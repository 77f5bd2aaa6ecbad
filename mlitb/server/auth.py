"""Access checks of the REST routes: the request's token against a project through the one check
(`mlitb.auth.allows`, which the data server and the WebSocket JOIN use too)."""

from __future__ import annotations

from fastapi import Request

from mlitb.auth import (ADMIN, OWN, READ, Need, allows, is_admin, join_check, matches, new_token, require, token_hash,
                        token_of)

__all__ = ["ADMIN", "OWN", "READ", "allows", "is_admin", "is_admin_request", "join_check", "matches", "new_token", "require",
           "require_admin", "require_owner", "require_project", "token_hash", "token_of"]


def _admin_token(request: Request) -> str | None:
    return request.app.state.settings.admin_token


def is_admin_request(request: Request) -> bool:
    return allows(token_of(request), ADMIN, admin_token=_admin_token(request))


def require_project(request: Request, project, need: Need, what: str) -> None:
    """401/403 unless the request's token may do what needs `need` on `project` (a runtime: its token hashes and
    whether it is private)."""
    require(token_of(request), need, what, admin_token=_admin_token(request), owner_hash=project.owner_hash,
            invite_hash=project.invite_hash, private=project.spec.private)


def require_owner(owner_hash: str | None, request: Request, admin_token: str | None, what: str) -> None:
    """401/403 unless the request carries the owner's token (`owner_hash`) or the admin's."""
    require(token_of(request), OWN, what, admin_token=admin_token, owner_hash=owner_hash)


def require_admin(request: Request, what: str) -> None:
    require(token_of(request), ADMIN, what, admin_token=_admin_token(request))
