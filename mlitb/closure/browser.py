"""Runs a closure's stored browser code in headless Chromium: a loopback HTTP server (cross-origin
isolated, like the master) serves the closure's own check page and bundle, its model, the TF.js wasm
binaries (checked against the hashes the closure recorded) and the data; Playwright drives the page."""

from __future__ import annotations

import base64
import http.server
import threading
from pathlib import Path

from mlitb.closure.format import STATIC_DIR, Closure, sha256
from mlitb.errors import ErrorCode, MlitbError

TYPES = {".js": "text/javascript", ".html": "text/html; charset=utf-8", ".json": "application/json",
         ".wasm": "application/wasm"}
HEADERS = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp",
           "Cross-Origin-Resource-Policy": "same-origin", "Cache-Control": "no-store"}


def check_wasm(closure: Closure, directory: Path = STATIC_DIR / "wasm") -> dict[str, bytes]:
    """The installed TF.js wasm binaries, each of which must match the hash the closure recorded."""
    recorded = closure.manifest.get("code", {}).get("wasm_sha256") or {}
    out = {}
    for name, digest in recorded.items():
        path = directory / Path(name).name
        data = path.read_bytes() if path.is_file() else b""
        if sha256(data) != digest:
            raise MlitbError(ErrorCode.CLOSURE_TAMPERED, f"the installed wasm binary {name} does not match the "
                             f"closure's recorded hash (a different TF.js build); cannot run the stored code")
        out[name] = data
    return out


class FileServer:
    """Serves a dict of path -> bytes on 127.0.0.1 with the isolation headers; `with FileServer(files) as s:`."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        files_ = files

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (stdlib name)
                body = files_.get(self.path.split("?", 1)[0])
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", TYPES.get(Path(self.path.split("?")[0]).suffix,
                                                           "application/octet-stream"))
                self.send_header("Content-Length", str(len(body)))
                for k, v in HEADERS.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> "FileServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def closure_files(closure: Closure, weights_part: str = "model/weights.bin") -> dict[str, bytes]:
    """The closure's own code, its model (with the chosen weights) and the checked wasm binaries, by URL path."""
    files = {"/static/closure.html": closure.parts["code/closure.html"],
             "/static/closure_check.js": closure.parts["code/closure_check.js"],
             "/model/model.json": closure.parts["model/model.json"],
             "/model/weights.bin": closure.parts[weights_part]}
    files.update({f"/static/wasm/{name}": data for name, data in check_wasm(closure).items()})
    return files


class ClosurePage:
    """Headless Chromium on the closure's check page; `call(name, *args)` runs window.closure[name]."""

    def __init__(self, files: dict[str, bytes]):
        self.server = FileServer(files)

    def __enter__(self) -> "ClosurePage":
        from playwright.sync_api import sync_playwright

        from mlitb.workers.browser import CHROMIUM_ARGS, chromium_path

        self.server.__enter__()
        self._pw = sync_playwright().start()
        try:
            self._browser = self._pw.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
            self.page = self._browser.new_page()
            self.page.goto(f"{self.server.url}/static/closure.html")
            self.page.wait_for_function("window.closure !== undefined", timeout=30_000)
        except BaseException:
            self.__exit__()
            raise
        return self

    def call(self, name: str, *args):
        return self.page.evaluate(f"(args) => window.closure.{name}(...args)", list(args))

    def __exit__(self, *exc: object) -> None:
        browser = getattr(self, "_browser", None)
        if browser is not None:
            browser.close()
        self._pw.stop()
        self.server.__exit__()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
