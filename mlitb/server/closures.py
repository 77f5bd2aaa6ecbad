"""REST routes of research closures (docs/closure.md) and the model zoo page.

Save a running project's closure (owner or admin; the zip is built in a thread, training does not
pause), list and download stored closures, upload one, and fork one into a new project: continue from
its weights and optimizer state, or restart from its seed with the same configuration. Stored under
`app.state.closures_dir` (`settings.data_dir / "closures"`; a cluster gateway's is the cluster's, shared):
`<id>.zip` and a `<id>.json` summary for the listing.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import time
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from mlitb.closure.format import Closure, appended_examples, build_closure, read_closure, snapshot
from mlitb.errors import ErrorCode, MlitbError
from mlitb.server import auth
from mlitb.server.bodies import read_capped
from mlitb.server.summary import project_summary

router = APIRouter()
ZOO_PAGE = Path(__file__).resolve().parents[1] / "static" / "zoo.html"
MAX_UPLOAD_BYTES = 256 << 20  # a closure file sent to POST /api/closures
_ID = re.compile(r"^[a-z0-9-]{1,64}$")


class SaveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str = Field("", max_length=4000, description="free text stored in the closure's manifest")


class ForkBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["continue", "restart"] = Field(
        "continue", description="continue: from the closure's weights and optimizer state (its metrics carry on); "
                                "restart: from its initial seed with the same configuration")
    name: str | None = Field(None, min_length=1, max_length=100, description="new project's name (default: the closure's)")


def _dir(request: Request) -> Path:
    d = request.app.state.closures_dir
    d.mkdir(parents=True, exist_ok=True)
    return d


def _summary(cid: str, closure: Closure, size: int, private: bool, owner_hash: str | None) -> dict:
    m = closure.manifest
    return {"id": cid, "name": m.get("name", closure.spec.name), "description": m.get("description", ""),
            "created": m.get("created"), "rounds": m.get("round", 0), "loss": m.get("loss"),
            "test_error": (m.get("reported") or {}).get("test_error"), "verifiable": m.get("reported") is not None,
            "unverifiable_reason": None if m.get("reported") else m.get("unreported") or "no test error was reported",
            "dataset": closure.spec.dataset,
            "param_count": closure.network.param_count, "replayable": bool(m.get("replay")), "size": size,
            "format_version": m.get("format_version"), "private": private, "owner_hash": owner_hash}


def _public(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k != "owner_hash"}


def _store(request: Request, raw: bytes, closure: Closure, private: bool, owner_hash: str | None, prefix: str) -> dict:
    cid = f"{prefix}-{secrets.token_hex(4)}"
    d = _dir(request)
    summary = _summary(cid, closure, len(raw), private, owner_hash)
    # each file is renamed into place whole, the summary last: a crash leaves parts that the server's start
    # removes (server/storage.py), never a listed closure without its file
    for name, data in ((f"{cid}.zip", raw), (f"{cid}.json", json.dumps(summary).encode())):
        (d / f"{name}.partial").write_bytes(data)
        os.replace(d / f"{name}.partial", d / name)
    return summary


def _stored(request: Request, cid: str) -> tuple[Path, dict]:
    """A stored closure's file and summary, if this request may read it (private ones: its owner or the admin)."""
    d = _dir(request)
    if not _ID.match(cid) or not (d / f"{cid}.json").is_file() or not (d / f"{cid}.zip").is_file():
        raise MlitbError(ErrorCode.UNKNOWN_CLOSURE, f"no stored closure with id {cid!r}")
    summary = json.loads((d / f"{cid}.json").read_text())
    auth.require(auth.token_of(request), auth.READ, "read this private closure",
                 admin_token=request.app.state.settings.admin_token, owner_hash=summary.get("owner_hash"),
                 private=bool(summary.get("private")))
    return d / f"{cid}.zip", summary


def _may_create(request: Request) -> None:
    if not request.app.state.settings.open_creation:
        auth.require_admin(request, "create projects on this server")


@router.post("/api/projects/{project_id}/closures", status_code=201,
             summary="Save the project's research closure now (owner or admin); training does not pause")
async def save_closure(project_id: int, request: Request, body: SaveBody | None = None) -> dict:
    registry = request.app.state.registry
    rt = registry.get(project_id)
    auth.require_project(request, rt, auth.OWN, "save this project's closure")
    storage = request.app.state.storage
    storage.require(0, what="saving a closure")
    raw = await request.app.state.project_closure(rt, body.description if body else "")
    # what is stored is what a reader accepts; at a cluster gateway the bytes come from another process (hostile)
    closure = await asyncio.to_thread(read_closure, raw)
    await asyncio.to_thread(storage.require, len(raw), what=f"a closure of {len(raw)} bytes")
    summary = await asyncio.to_thread(_store, request, raw, closure, rt.spec.private, rt.owner_hash,
                                      f"p{project_id}-r{_saved_round(closure)}")
    return _public(summary)


async def closure_here(runtime, description: str) -> bytes:
    """The closure of a project this process runs (`app.state.project_closure`; a cluster gateway replaces it:
    mlitb/cluster/closures.py). The snapshot copies in the event loop (no pause, no torn state); the zip is built
    in a thread."""
    snap = snapshot(runtime, description)
    return await asyncio.to_thread(build_closure, snap)


def _saved_round(closure: Closure) -> int:
    """The round a saved closure was taken at: it names the stored file, so it must be a plain count."""
    rnd = closure.manifest.get("round")
    if type(rnd) is not int or rnd < 0:
        raise MlitbError(ErrorCode.CLOSURE_INVALID, "manifest.json: 'round' must be an integer >= 0")
    return rnd


@router.get("/api/closures", summary="Stored research closures (private ones only for the admin)")
async def list_closures(request: Request) -> list[dict]:
    admin = auth.is_admin_request(request)
    out = []
    for path in sorted(_dir(request).glob("*.json")):
        try:
            summary = json.loads(path.read_text())
        except ValueError:
            continue
        if admin or not summary.get("private"):
            out.append(_public(summary))
    return sorted(out, key=lambda s: s.get("created") or 0, reverse=True)


@router.get("/api/closures/{closure_id}", summary="One stored closure's summary")
async def get_closure(closure_id: str, request: Request) -> dict:
    return _public(_stored(request, closure_id)[1])


@router.get("/api/closures/{closure_id}/download", summary="Download a stored closure (zip)",
            response_class=FileResponse, responses={200: {"content": {"application/zip": {}}}})
async def download_closure(closure_id: str, request: Request) -> FileResponse:
    path, _ = _stored(request, closure_id)
    return FileResponse(path, media_type="application/zip", filename=f"{closure_id}.closure.zip")


@router.post("/api/closures", status_code=201, summary="Upload a closure file (application/zip body) to the zoo")
async def upload_closure(request: Request) -> dict:
    _may_create(request)
    limits, storage = request.app.state.creation, request.app.state.storage
    limits.admit(request, project=False)
    storage.require(0, what="a closure upload")
    raw = await read_capped(request, MAX_UPLOAD_BYTES, ErrorCode.CLOSURE_TOO_LARGE, "a closure")
    closure = await asyncio.to_thread(read_closure, raw)  # every check passes before anything is stored
    await asyncio.to_thread(storage.require, len(raw), what=f"a closure of {len(raw)} bytes")
    uploader = limits.admit(request, project=False)  # again: other uploads may have counted while this one read
    summary = await asyncio.to_thread(_store, request, raw, closure, False, None, "upload")
    limits.record(uploader)
    return _public(summary)


@router.post("/api/closures/{closure_id}/fork", status_code=201,
             summary="Start a new project from a stored closure; returns its owner token once")
async def fork_closure(closure_id: str, request: Request, body: ForkBody | None = None) -> dict:
    _may_create(request)
    body = body or ForkBody()
    path, _ = _stored(request, closure_id)
    closure = await asyncio.to_thread(read_closure, path)
    registry = request.app.state.registry
    spec = closure.spec.model_dump()
    if body.name:
        spec["name"] = body.name
    limits = request.app.state.creation
    creator = limits.admit(request)  # no await from here to create: the counts hold
    # checks the data set and network again; starts at the seed. Pictures labelled on the fly come along: the
    # network has their classes
    runtime, secrets_ = registry.create(spec, appended_examples(closure))
    limits.record(creator, runtime.id)
    if body.mode == "continue":
        # before the new loop first runs (no await since create): it starts from the closure's state
        rnd = int(closure.manifest.get("round", 0))
        runtime.restore(rnd, closure.params, closure.history, closure.metrics)
        reported = closure.manifest.get("reported")
        if reported is not None:  # a closure saved from the fork at once can be verified too
            runtime.carry_evaluation(reported["round"], reported["test_error"], reported["count"],
                                     closure.floats(reported["weights"]))
        if registry.store is not None:
            registry.store.save_checkpoint(runtime.id, rnd, runtime.params, runtime.history, runtime.metrics,
                                           time.time())
    return {**project_summary(runtime), **secrets_, "forked_from": closure_id, "mode": body.mode}


@router.get("/zoo", include_in_schema=False)
async def zoo_page() -> FileResponse:
    return FileResponse(ZOO_PAGE)
