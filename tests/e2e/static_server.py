"""A tiny threaded HTTP server for the built web client (mlitb/static at /static/), cross-origin isolated.

It sends the COOP/COEP headers the real server sends (so SharedArrayBuffer and wasm threads are
possible) and the MIME types browsers insist on for modules and wasm. Loopback only, ephemeral port.
"""

from __future__ import annotations

import http.server
import mimetypes
import threading
from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parents[2] / "mlitb" / "static"

TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".wasm": "application/wasm",
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".bin": "application/octet-stream",
    ".css": "text/css",
}

ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _handler(mounts: dict[str, Path]) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (stdlib name)
            path = self.path.split("?", 1)[0].split("#", 1)[0]
            for prefix, root in mounts.items():
                if path.startswith(prefix):
                    target = (root / path[len(prefix):]).resolve()
                    # Never serve outside the mounted folder.
                    if target.is_file() and target.is_relative_to(root.resolve()):
                        return self._send(target)
            self.send_error(404)

        def _send(self, target: Path) -> None:
            body = target.read_bytes()
            kind = TYPES.get(target.suffix) or mimetypes.guess_type(target.name)[0] or "application/octet-stream"
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            for k, v in ISOLATION_HEADERS.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


class StaticServer:
    """`with StaticServer() as s: s.url("/static/selftest.html")`; extra mounts map URL prefixes to folders."""

    def __init__(self, root: Path = STATIC_DIR, extra: dict[str, Path] | None = None) -> None:
        self._mounts = {"/static/": Path(root), **(extra or {})}
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(self._mounts))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def __enter__(self) -> StaticServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


if __name__ == "__main__":
    with StaticServer() as server:
        print(server.url("/static/selftest.html"), flush=True)
        threading.Event().wait()
