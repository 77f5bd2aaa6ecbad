"""A research closure saved at a gateway is the project's: built where the project's true state is.

A gateway's runtime holds the round's parameters but not the project's optimizer state, metrics or replay record;
those are the project actor's. So POST .../closures at a gateway runs the single-process route
(mlitb/server/closures.py) with its snapshot-and-build step replaced (`app.state.project_closure`): the gateway
asks the project (`ProjectCore.closure`, over Ray `ProjectActor.closure`) for the zip, built from the project's
runtime. Trackers report their test error to the gateway they joined, so the gateway hands its newest report
along (and, without one, the reason); the project checks it as hostile input. The bytes that come back are
hostile too: capped here, then read whole by `read_closure` in the route before anything is stored.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math

import numpy as np

from mlitb.closure.format import build_closure, snapshot, unreported_reason
from mlitb.errors import ErrorCode, MlitbError
from mlitb.server.closures import MAX_UPLOAD_BYTES

MAX_DESCRIPTION_CHARS = 4000  # the route's SaveBody allows as much
MAX_REASON_CHARS = 2000  # a gateway's reason for having no test error to report


def checked_evaluation(evaluated, runtime) -> tuple[int, float, int, np.ndarray]:
    """A gateway's tracker report (round, test error, examples counted, the parameters measured), every field
    checked: a round the project has reached, an error rate in [0, 1], a count >= 1, the network's float32 values."""
    if not isinstance(evaluated, (tuple, list)) or len(evaluated) != 4:
        raise MlitbError(ErrorCode.BAD_VALUE, "a test-error report is (round, error, count, parameters)")
    rnd, error, count, params = evaluated
    if type(rnd) is not int or not 0 <= rnd <= runtime.round:
        raise MlitbError(ErrorCode.BAD_VALUE, f"a test-error report's round must be in [0, {runtime.round}]")
    if not isinstance(error, float) or not math.isfinite(error) or not 0.0 <= error <= 1.0:
        raise MlitbError(ErrorCode.BAD_VALUE, "a test-error report's error rate must be in [0, 1]")
    if type(count) is not int or count < 1:
        raise MlitbError(ErrorCode.BAD_VALUE, "a test-error report counts at least one example")
    if not isinstance(params, np.ndarray) or params.dtype != np.float32 or params.shape != (runtime.param_count,):
        raise MlitbError(ErrorCode.WRONG_LENGTH, f"the measured parameters are {runtime.param_count} float32 values")
    if not np.isfinite(params).all():
        raise MlitbError(ErrorCode.NON_FINITE, "the measured parameters hold NaN or infinite values")
    return rnd, error, count, params.copy()


async def project_closure(runtime, description="", evaluated=None, unreported=None) -> bytes:
    """The closure zip of the project `runtime` runs (its parameters, optimizer state, all its metrics), with the
    saving gateway's report if it is newer than the project's own. The snapshot is copied before the first await
    (so it is one consistent state between two steps); the zip is built in a thread, so rounds go on meanwhile."""
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION_CHARS:
        raise MlitbError(ErrorCode.INVALID_REQUEST, f"a description is text of at most {MAX_DESCRIPTION_CHARS} chars")
    if unreported is not None and (not isinstance(unreported, str) or len(unreported) > MAX_REASON_CHARS):
        raise MlitbError(ErrorCode.BAD_VALUE, f"a reason is text of at most {MAX_REASON_CHARS} characters")
    report = None if evaluated is None else checked_evaluation(evaluated, runtime)
    snap = snapshot(runtime, description)
    if report is not None and (snap.evaluated is None or report[0] >= snap.evaluated[0]):
        snap = dataclasses.replace(snap, evaluated=report, unreported=None)
    elif snap.evaluated is None and unreported is not None:
        # the project itself has no clients: the gateway that saves knows why its trackers reported nothing
        snap = dataclasses.replace(snap, unreported=unreported)
    return await asyncio.to_thread(build_closure, snap)


async def closure_through_gateway(runtime, description: str) -> bytes:
    """`app.state.project_closure` at a gateway: the project's closure for the runtime's upstream, with this gateway's
    tracker report; what comes back must be bytes no larger than an uploaded closure may be."""
    evaluated = runtime.record.evaluated
    if evaluated is not None:  # plain numbers: the project refuses anything else
        evaluated = (int(evaluated[0]), float(evaluated[1]), int(evaluated[2]), evaluated[3])
    reason = None if evaluated is not None else unreported_reason(runtime)
    raw = await runtime.strategy.upstream.closure(description, evaluated, reason)
    if not isinstance(raw, bytes):
        raise MlitbError(ErrorCode.CLOSURE_INVALID, f"the project sent {type(raw).__name__}, not a closure file")
    if len(raw) > MAX_UPLOAD_BYTES:
        raise MlitbError(ErrorCode.CLOSURE_TOO_LARGE, f"the project's closure has {len(raw)} bytes; at most "
                         f"{MAX_UPLOAD_BYTES} are taken")
    return raw
