"""Loading a saved model: PUT /api/projects/{id}/model/weights.bin replaces a project's parameters
with a TF.js weights file of the same network (float32, manifest order; the owner's, before training)."""

from __future__ import annotations

import time

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
    # a round's step replaces the parameters when it closes: only swap them while no round can run
    if rt.open_round is not None or any(c.role == "trainer" for c in rt.clients.values()):
        raise MlitbError(ErrorCode.TRAINING_RUNNING, "the project has trainers: stop them before replacing its weights")
    rt.params = params
    rt.history = np.zeros_like(params)  # a fresh AdaGrad state for the loaded model
    rt.reset_broadcast()
    if registry.store is not None:
        registry.store.save_checkpoint(rt.id, rt.round, rt.params, rt.history, [], time.time())
    return {"param_count": rt.param_count, "round": rt.round}
