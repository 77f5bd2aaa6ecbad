"""Loading a saved model: PUT /api/projects/{id}/model/weights.bin replaces a project's parameters
with a TF.js weights file of the same network (float32, manifest order; the owner's, before training)."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Request

from mlitb.errors import ErrorCode, MlitbError
from mlitb.model import WEIGHTS_FILE
from mlitb.server import auth
from mlitb.server.bodies import read_capped

router = APIRouter()


@router.put(f"/api/projects/{{project_id}}/model/{WEIGHTS_FILE}",
            summary="Load saved weights (float32, manifest order) into a project with no trainers (owner)",
            openapi_extra={"requestBody": {"content": {"application/octet-stream": {}}, "required": True}})
async def put_weights(project_id: int, request: Request) -> dict:
    registry, settings = request.app.state.registry, request.app.state.settings
    rt = registry.get(project_id)
    auth.require_owner(rt.owner_hash, request, settings.admin_token, "replace this project's weights")
    expected = rt.param_count * 4
    body = await read_capped(request, expected, ErrorCode.WRONG_LENGTH, f"weights ({rt.param_count} float32)")
    if len(body) != expected:
        raise MlitbError(ErrorCode.WRONG_LENGTH, f"expected {expected} bytes ({rt.param_count} float32), got {len(body)}")
    params = np.frombuffer(body, dtype="<f4").astype(np.float32)
    if not np.isfinite(params).all():
        raise MlitbError(ErrorCode.NON_FINITE, "the weights hold NaN or infinite values")
    rt.load_weights(params)  # refused while trainers are connected; a fresh optimizer state and closure record
    await registry.checkpoint(rt)
    return {"param_count": rt.param_count, "round": rt.round}
