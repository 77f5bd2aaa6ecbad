"""Live hyper-parameters: PATCH /api/projects/{id}/hyper changes the learning rate and period T
of a running project (owner or admin); the change applies from the round that closes next (its
step and its metrics record) and is persisted in the project's stored spec."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, ValidationError

from mlitb.errors import ErrorCode, MlitbError, first_problem
from mlitb.master.project import Hyper
from mlitb.server import auth

router = APIRouter()
LIVE_FIELDS = ("learning_rate", "period_s")


class HyperPatch(BaseModel):
    """Body of PATCH /api/projects/{id}/hyper: any of the live-changeable fields."""

    model_config = ConfigDict(extra="forbid")
    learning_rate: float | None = Hyper.model_fields["learning_rate"]
    period_s: float | None = Hyper.model_fields["period_s"]


@router.patch("/api/projects/{project_id}/hyper", summary="Change learning rate / period T while training (owner)",
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": HyperPatch.model_json_schema()}}}})
async def patch_hyper(project_id: int, request: Request) -> dict:
    registry, settings = request.app.state.registry, request.app.state.settings
    rt = registry.get(project_id)
    auth.require_owner(rt.owner_hash, request, settings.admin_token, "change this project's hyper-parameters")
    try:
        body = await request.json()
    except ValueError:
        raise MlitbError(ErrorCode.INVALID_HYPER, "the body must be a JSON object") from None
    try:
        patch = HyperPatch.model_validate(body)
        changes = patch.model_dump(exclude_none=True)
        hyper = Hyper.model_validate({**rt.spec.hyper.model_dump(), **changes})
    except ValidationError as exc:
        _, message = first_problem(exc.errors())
        raise MlitbError(ErrorCode.INVALID_HYPER, message) from None
    rt.change_hyper(hyper)
    if registry.store is not None:
        registry.store.update_spec(project_id, rt.stored_spec().model_dump())
    return {"hyper": hyper.model_dump(), "from_round": rt.round}
