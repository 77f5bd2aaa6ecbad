"""Live hyper-parameters: PATCH /api/projects/{id}/hyper changes the learning rate and period T
of a running project (owner or admin); the change applies from the round that closes next (its
step and its metrics record) and is persisted in the project's stored spec.

A PATCH changes exactly the fields it carries: the body is merged into the project's current
hyper-parameters and the whole is validated by `Hyper` itself (its limits, strict types). The
body's schema is `Hyper`'s own for those fields, without defaults: a default on a PATCH field
reads as "left out means reset", which is what this route must never do.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import ValidationError

from mlitb.errors import ErrorCode, MlitbError, first_problem
from mlitb.master.project import Hyper
from mlitb.server import auth

router = APIRouter()
LIVE_FIELDS = ("learning_rate", "period_s")


def patch_schema() -> dict:
    """JSON schema of the PATCH body: any of LIVE_FIELDS, each with `Hyper`'s limits and no default."""
    props = Hyper.model_json_schema()["properties"]
    return {"type": "object", "additionalProperties": False, "title": "HyperPatch",
            "description": "any of the live-changeable hyper-parameters; fields left out keep their values",
            "properties": {name: {k: v for k, v in props[name].items() if k != "default"} for name in LIVE_FIELDS}}


@router.patch("/api/projects/{project_id}/hyper", summary="Change learning rate / period T while training (owner)",
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": patch_schema()}}}})
async def patch_hyper(project_id: int, request: Request) -> dict:
    registry, settings = request.app.state.registry, request.app.state.settings
    rt = registry.get(project_id)
    auth.require_owner(rt.owner_hash, request, settings.admin_token, "change this project's hyper-parameters")
    try:
        changes = await request.json()
    except ValueError:
        raise MlitbError(ErrorCode.INVALID_HYPER, "the body must be a JSON object") from None
    if not isinstance(changes, dict):
        raise MlitbError(ErrorCode.INVALID_HYPER, "the body must be a JSON object")
    other = sorted(set(changes) - set(LIVE_FIELDS))
    if other:
        raise MlitbError(ErrorCode.INVALID_HYPER, f"{other[0]}: cannot be changed while training; a PATCH may carry "
                         f"{' and '.join(LIVE_FIELDS)}")
    try:
        hyper = Hyper.model_validate({**rt.spec.hyper.model_dump(), **changes})
    except ValidationError as exc:
        _, message = first_problem(exc.errors())
        raise MlitbError(ErrorCode.INVALID_HYPER, message) from None
    rt.change_hyper(hyper)
    if registry.store is not None:
        registry.store.update_spec(project_id, rt.stored_spec().model_dump())
    return {"hyper": hyper.model_dump(), "from_round": rt.round}
