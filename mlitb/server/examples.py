"""Learning a new class on the fly (MLitB §3.6): POST /api/projects/{id}/examples?label=NAME with a
PNG or JPEG body (owner or admin) adds one labelled picture to the project's training data.

A label the project does not know becomes a new class: the output dense layer gains a unit
(mlitb/model/grow.py). The example and the grown spec are stored in one transaction; the
runtime swaps in the new network and data between rounds, and every worker is WELCOMEd again
(trainers and trackers reload the model, trainers keep the examples they hold and fetch the new one).
"""

from __future__ import annotations

import asyncio
import io
import time
import weakref

from fastapi import APIRouter, Query, Request

from mlitb.data.examples import MAX_LABEL_CHARS, LabelledExample, clean_label, with_examples
from mlitb.data.images import UndecodableImage, decode_image
from mlitb.errors import ErrorCode, MlitbError
from mlitb.model.grow import with_more_classes
from mlitb.server import auth
from mlitb.server.bodies import read_capped

router = APIRouter()
IMAGE_TYPES = {"image/png", "image/jpeg"}
MAX_IMAGE_BYTES = 8 * 1024**2
MAX_EXAMPLES = 10_000  # examples added to one project this way (each is kept in the database)
_locks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # per project: one example at a time, in order


@router.post("/api/projects/{project_id}/examples", summary="Add a labelled picture to the training data; a new "
             "label adds a class (owner or admin)",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "image/png": {"schema": {"type": "string", "format": "binary"}},
                 "image/jpeg": {"schema": {"type": "string", "format": "binary"}}}}})
async def add_example(project_id: int, request: Request,
                      label: str = Query(..., min_length=1, max_length=MAX_LABEL_CHARS,
                                         description="the class of the picture (printable, no slashes); a new one "
                                                     "adds an output unit")) -> dict:
    registry, settings = request.app.state.registry, request.app.state.settings
    rt = registry.get(project_id)
    auth.require_owner(rt.owner_hash, request, settings.admin_token, "add examples to this project")
    label = clean_label(label)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in IMAGE_TYPES:
        raise MlitbError(ErrorCode.WRONG_CONTENT_TYPE, f"send the picture as image/png or image/jpeg, not "
                         f"'{ctype or 'nothing'}'")
    shape = tuple(rt.network.input_shape)
    if len(shape) != 3 or shape[2] not in (1, 3):
        raise MlitbError(ErrorCode.CANNOT_ADD_CLASS, f"pictures need a network whose input is [h, w, 1 or 3], "
                         f"not {list(shape)}")
    body = await read_capped(request, MAX_IMAGE_BYTES, ErrorCode.UPLOAD_TOO_LARGE, "an example image")
    try:
        image = await asyncio.to_thread(decode_image, io.BytesIO(body), shape)
    except UndecodableImage as exc:
        raise MlitbError(ErrorCode.BAD_IMAGE, str(exc)) from None
    async with _locks.setdefault(rt, asyncio.Lock()):
        if registry.projects.get(project_id) is not rt:
            raise MlitbError(ErrorCode.UNKNOWN_PROJECT, f"project {project_id} was deleted")
        layers, dataset = rt.latest_model_and_data()
        if dataset is None:
            raise MlitbError(ErrorCode.NO_DATA, "the project has no training data yet: upload or choose a data set first")
        if dataset.appended >= MAX_EXAMPLES:
            raise MlitbError(ErrorCode.CANNOT_ADD_CLASS, f"{dataset.appended} examples were added already; at most "
                             f"{MAX_EXAMPLES}")
        await asyncio.to_thread(request.app.state.storage.require, image.nbytes, project_id,
                                what=f"an example of {image.nbytes} bytes")
        example = LabelledExample(label, image)
        # concatenating the training images and hashing the new version take a while for large data sets
        layers, grown, is_new = await asyncio.to_thread(grown_by, layers, dataset, example)
        spec = rt.spec.model_copy(update={"network": layers})
        param_count = spec.build_network().param_count  # the grown network is valid before anything is stored
        if registry.store is not None:
            await asyncio.to_thread(registry.store.add_example, project_id, label, image, spec.model_dump(), time.time())
        from_round = rt.change_model_and_data(layers, grown)
    labels = grown.labels
    return {"label": label, "class_index": labels.index(label), "new_class": is_new, "classes": len(labels),
            "labels": list(labels), "train_count": len(grown.train), "from_round": from_round,
            "param_count": param_count}


def grown_by(layers: list[dict], dataset, example: LabelledExample) -> tuple[list[dict], object, bool]:
    """The network layers and data once `example` is added (a new label adds an output unit; CANNOT_ADD_CLASS past
    256 classes or without a dense output), and whether its label is new. Also the project actor's, in a cluster."""
    is_new = example.label not in dataset.labels
    if is_new:
        layers = with_more_classes(layers, 1)
    grown = with_examples(dataset, [example])
    grown.version  # noqa: B018 - computed here, off the event loop, and cached on the data set
    return layers, grown, is_new
