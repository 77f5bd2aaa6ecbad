"""`mlitb worker`: headless browser trainers and trackers that join a project on any reachable server."""

from __future__ import annotations

import signal
import sys
import threading
import time

import httpx

from mlitb.unreachable import EXIT_UNREACHABLE, unreachable_line
from mlitb.workers.browser import BrowserPool, status_line


def project_for_worker(server: str, project: int, token: str | None) -> tuple[dict | None, int]:
    """The project's summary before any worker starts, or (None, exit code) after one error line on stderr:
    unreachable server, unknown project, or a private project without its token."""
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        r = httpx.get(f"{server.rstrip('/')}/api/projects/{project}", headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        print(unreachable_line(exc) or f"error: cannot reach {server}: {exc}", file=sys.stderr)
        return None, EXIT_UNREACHABLE
    if r.status_code != 200:
        print(project_problem(server, project, r, "--token"), file=sys.stderr)
        return None, 2
    return r.json(), 0


def project_problem(server: str, project: int, response: httpx.Response, token_option: str) -> str:
    """One line saying why GET /api/projects/{id} did not answer 200: a private project and no token, a token
    that does not open it, no such project, or what the server said."""
    try:
        body = response.json()
        code, message = body.get("code"), body.get("message", response.text)
    except (ValueError, AttributeError):
        code, message = None, response.text
    if code == "AUTH_REQUIRED":
        return (f"error: project {project} on {server} is private: give its invite token ({token_option} or "
                f"$MLITB_INVITE_TOKEN)")
    if code == "FORBIDDEN":
        return f"error: the token given does not open private project {project} on {server}"
    if code == "UNKNOWN_PROJECT":
        return f"error: {server} has no project {project}"
    return f"error: project {project} on {server}: {response.status_code} {code or ''} {message}".rstrip()


def worker_counts(trainers: int, trackers: int | str) -> tuple[int, int, bool] | None:
    """(trainers, trackers, auto) for `mlitb worker` of either engine, `trackers` "auto" counted 0 until the project
    is known; None after one error line on stderr when nothing at all is asked for."""
    auto = trackers == "auto"
    if auto:
        trackers = 0
    if trainers < 0 or trackers < 0 or trainers + trackers + auto == 0:
        print("error: ask for at least one trainer or tracker", file=sys.stderr)
        return None
    return trainers, trackers, auto


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def leave_on_sigterm() -> None:
    """SIGTERM (a supervisor's stop, `Popen.terminate`) leaves as Ctrl-C does: workers close and children are
    stopped, not orphaned by the default handler's exit. Only the main thread may install it."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)


def run_grid_workers(server: str, project: int, trainers: int = 1, trackers: int | str = 0, backend: str = "auto",
                     duration_s: float | None = None, token: str | None = None, cpu_throttle: float = 1.0,
                     out=None, volunteer: str | None = None) -> int:
    """`trackers` "auto": one tracker if the project has none yet (its test error is what makes a saved closure
    verifiable), else none, so many grid machines on one project add one tracker between them, not one each."""
    out = out or sys.stdout  # looked up per call: a default bound at import would keep a replaced stdout
    counts = worker_counts(trainers, trackers)
    if counts is None:
        return 2
    trainers, trackers, auto = counts
    if not 1 <= cpu_throttle <= 100:
        print("error: --cpu-throttle must be between 1 and 100", file=sys.stderr)
        return 2
    info, failed = project_for_worker(server, project, token)
    if info is None:
        return failed
    if auto:
        trackers = 0 if info.get("trackers") else 1
    print(f"joining project {project} ({info['name']}) on {server} with {trainers} trainer(s), "
          f"{trackers} tracker(s){' (auto: the project had none)' if auto and trackers else ''}"
          f"{f', CPU throttled {cpu_throttle:g}x' if cpu_throttle > 1 else ''}", file=out, flush=True)
    deadline = None if duration_s is None else time.monotonic() + duration_s
    leave_on_sigterm()  # pages closed, throttled renderers resumed
    with BrowserPool(server, backend=backend, token=token, cpu_throttle=cpu_throttle, volunteer=volunteer) as pool:
        for _ in range(trainers):
            pool.open(project, "trainer")
        for _ in range(trackers):
            pool.open(project, "tracker")
        last_round = -1
        try:
            while deadline is None or time.monotonic() < deadline:
                pool.wait(0.5)
                statuses = pool.statuses()
                rnd = max((s.get("round", -1) for s in statuses), default=-1)
                if rnd > last_round:
                    last_round = rnd
                    print(f"round {rnd}: {status_line(statuses)}", file=out, flush=True)
        except KeyboardInterrupt:
            pass
    return 0
