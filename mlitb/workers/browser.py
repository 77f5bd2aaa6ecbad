"""Headless Chromium workers: each page opens the server's own client and joins a project.

Driven with Playwright for Python on the system's Chromium (never a downloaded browser).
The page reports its workers' status through `window.mlitb.workers()`.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlencode

from mlitb.workers.throttle import RendererThrottle

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--disable-renderer-backgrounding", "--disable-background-timer-throttling",
    "--disable-backgrounding-occluded-windows", "--enable-unsafe-swiftshader",
]


def chromium_path() -> str:
    path = os.environ.get("MLITB_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(path):
        raise RuntimeError(f"Chromium not found at {path}; install it (apt-get install -y chromium) or set MLITB_CHROMIUM")
    return path


@dataclass
class BrowserPool:
    """One headless Chromium; one page per worker, so each gets its own Web Worker and event loop."""

    server_url: str
    backend: str = "auto"
    token: str | None = None  # invite token of a private project
    cpu_throttle: float = 1.0  # each page's CPU slowed this many times (DevTools Emulation.setCPUThrottlingRate)
    volunteer: str | None = None  # the volunteer key the pages' trainers send in JOIN (None: each profile's own)
    pages: list = field(default_factory=list)

    def __enter__(self) -> "BrowserPool":
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        marker = f"--mlitb-pool={uuid.uuid4().hex}"  # an unknown switch, ignored by Chromium: finds its processes
        self._browser = self._pw.chromium.launch(executable_path=chromium_path(), headless=True,
                                                 args=CHROMIUM_ARGS + [marker])
        self._context = self._browser.new_context()
        if self.volunteer is not None:
            # the page keeps its volunteer key in localStorage (web/src/app/volunteer.ts); a fresh headless profile
            # would make a new one, so the key is stored before any page script runs (never in the URL: it is secret)
            self._context.add_init_script(
                f"try {{ localStorage.setItem('mlitb-volunteer-key', {json.dumps(self.volunteer)}); }} catch (e) {{}}")
        self._throttle = RendererThrottle(marker, self.cpu_throttle).start() if self.cpu_throttle > 1 else None
        return self

    def open(self, project: int, role: str) -> None:
        page = self._context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.errors = errors  # type: ignore[attr-defined]
        if self.cpu_throttle != 1.0:
            # the page's main thread; its Web Workers are slowed by the renderer duty cycle (throttle.py)
            self._context.new_cdp_session(page).send("Emulation.setCPUThrottlingRate", {"rate": self.cpu_throttle})
        query = urlencode({"project": project, "join": role, "backend": self.backend})
        # the invite token goes in the fragment, which the browser never sends: it stays out of server logs
        fragment = f"#{urlencode({'token': self.token})}" if self.token else ""
        page.goto(f"{self.server_url.rstrip('/')}/?{query}{fragment}")
        self.pages.append(page)

    def close_page(self, index: int) -> None:
        """Close one worker's page, as a volunteer closing the tab would."""
        self.pages.pop(index).close()

    def statuses(self) -> list[dict]:
        out = []
        for page in self.pages:
            try:
                out.extend(page.evaluate("window.mlitb ? window.mlitb.workers() : []"))
            except Exception as exc:  # a crashed or closed page
                out.append({"state": "error", "error": str(exc)})
        return out

    def wait(self, seconds: float) -> None:
        """Sleep while letting Playwright deliver its events."""
        if self.pages:
            self.pages[0].wait_for_timeout(seconds * 1000)

    def __exit__(self, *exc) -> None:
        for page in self.pages:
            try:
                page.evaluate("window.mlitb && window.mlitb.workers().forEach(w => window.mlitb.stopWorker?.(w.id))")
            except Exception:
                pass
        if self._throttle is not None:
            self._throttle.stop()
        self._context.close()
        self._browser.close()
        self._pw.stop()


def status_line(statuses: list[dict]) -> str:
    parts = []
    for s in statuses:
        if s.get("role") == "tracker":
            err = s.get("testError")
            parts.append(f"tracker {s.get('backend', '?')} {s.get('state')} test error "
                         f"{'-' if err is None else f'{err * 100:.2f}%'}")
        else:
            parts.append(f"trainer {s.get('backend', '?')} {s.get('state')} {s.get('samplesPerS', '-')} samples/s "
                         f"work {s.get('workMs', '-')} ms")
        if s.get("error"):
            parts[-1] += f" [{s['error']}]"
    return " | ".join(parts)
