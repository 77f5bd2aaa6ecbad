"""CPU throttling of a headless Chromium's trainers (`mlitb worker --cpu-throttle R`): a slower device on this machine.

DevTools' `Emulation.setCPUThrottlingRate` slows a page's main thread, but the trainer computes in a Web
Worker, and Chromium (156) refuses the command on worker targets ("Operation is only supported for
pages, not workers"). So besides setting it on every page, `RendererThrottle` runs the browser's
renderer processes (which hold the pages and their workers) on a duty cycle: every SLICE_S it lets
them run for SLICE_S / R and stops them (SIGSTOP) for the rest, as the DevTools throttler does to
one thread. Linux only (it reads /proc).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

SLICE_S = 0.1  # one run/stop cycle: long enough that a late wake-up on a loaded machine changes the ratio little
RESCAN_S = 1.0  # renderer processes come and go with pages: look for them again this often


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        pid, ppid = int(stat.parent.name), int(text[text.rindex(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(pid)
    return kids


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def renderer_pids(marker: str) -> list[int]:
    """Renderer processes of the Chromium whose command line holds `marker` (a switch given at its launch)."""
    kids = _children()
    roots = [pid for pid in kids.get(os.getpid(), []) + [p for c in kids.get(os.getpid(), []) for p in kids.get(c, [])]
             if marker in _cmdline(pid)]
    found, stack = [], list(roots)
    while stack:
        pid = stack.pop()
        for child in kids.get(pid, []):
            if "--type=renderer" in _cmdline(child):
                found.append(child)
            stack.append(child)
    return found


class RendererThrottle:
    """Runs the marked browser's renderers 1/rate of the time, on a thread, until `stop()`."""

    def __init__(self, marker: str, rate: float):
        if rate < 1:
            raise ValueError("a CPU throttling rate is at least 1")
        self.marker, self.rate = marker, rate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mlitb-cpu-throttle", daemon=True)
        self.pids: list[int] = []

    def start(self) -> "RendererThrottle":
        self._thread.start()
        return self

    def _signal(self, sig: int) -> None:
        for pid in self.pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def _run(self) -> None:
        run_s, stop_s, scanned = SLICE_S / self.rate, SLICE_S * (1 - 1 / self.rate), 0.0
        try:
            while not self._stop.is_set():
                if time.monotonic() - scanned > RESCAN_S:
                    self.pids, scanned = renderer_pids(self.marker), time.monotonic()
                time.sleep(run_s)
                self._signal(signal.SIGSTOP)
                time.sleep(stop_s)
                self._signal(signal.SIGCONT)
        finally:
            self._signal(signal.SIGCONT)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
