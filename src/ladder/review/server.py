"""The review page's HTTP server: stdlib ``http.server``, one process, local by default.

It follows ``ladder serve``'s rules (:mod:`ladder.serve.security`): it listens on 127.0.0.1
unless told otherwise, and a non-loopback address needs an API key. With a key, every
request must carry it — as ``Authorization: Bearer KEY``, or the cookie the page gets by
opening ``/?key=KEY`` once. Writes are POSTs of JSON from the page's own origin only (a
form on another site cannot send ``application/json`` without a preflight this server
never grants, and a foreign ``Origin`` is refused), so a web page open in the same browser
cannot judge records.
"""

from __future__ import annotations

import json
import threading
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from ladder.ports import listening_socket
from ladder.review.page import PAGE
from ladder.review.store import CORRECTIONS_FILE, PREFERENCES_FILE, Judgment, ReviewStore
from ladder.serve.security import check_bind, key_matches

__all__ = ["ReviewServer"]

_COOKIE = "ladder_review_key"
_MAX_BODY = 1_048_576  # a judgment is small; a larger body is refused unread


class ReviewServer:
    """Serve the review page of ``store``'s run on ``host:port`` (port 0: any free port).

    Raises:
        ConfigError: a non-loopback ``host`` without ``api_key``, or the port is taken.
    """

    def __init__(self, store: ReviewStore, host: str, port: int, api_key: str | None) -> None:
        check_bind(host, api_key)
        self.store = store
        self.api_key = api_key
        self.lock = threading.Lock()  # one judgment written at a time
        sock = listening_socket(host, port)
        self.httpd = ThreadingHTTPServer(sock.getsockname()[:2], _handler(self), False)
        self.httpd.socket.close()
        self.httpd.socket = sock
        self.httpd.server_address = sock.getsockname()[:2]
        self.httpd.daemon_threads = True
        self.httpd.server_activate()
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.httpd.server_address[1]}/"

    def serve_forever(self) -> None:
        """Answer requests until :meth:`shutdown` is called (or Ctrl-C), then close."""
        try:
            self.httpd.serve_forever(poll_interval=0.2)
        finally:
            self.httpd.server_close()

    def shutdown(self) -> None:
        """Stop :meth:`serve_forever` (from another thread)."""
        self.httpd.shutdown()

    def state(self) -> dict[str, Any]:
        """What the page loads: the run, its records in review order and the judgments."""
        run = self.store.run
        return {
            "run": str(run.path),
            "kind": run.kind,
            "systems": run.systems,
            "records": [r.to_json() for r in run.records],
            "judgments": {k: vars(j) for k, j in self.store.judgments.items()},
            "files": {
                "preferences": str(self.store.folder / PREFERENCES_FILE),
                "corrections": str(self.store.folder / CORRECTIONS_FILE),
            },
        }

    def judge(self, body: Any) -> dict[str, Any]:
        """Save a judgment posted by the page (a ValueError names the bad field)."""
        judgment = Judgment.from_json(body, self.store.run)
        with self.lock:
            self.store.save(judgment)
        return {"saved": vars(judgment), "judged": len(self.store.judgments)}

    def forget(self, body: Any) -> dict[str, Any]:
        """Drop one record's judgment (the page's undo)."""
        record = body.get("id") if isinstance(body, dict) else None
        if not isinstance(record, str):
            raise ValueError("field 'id': expected a string")
        with self.lock:
            self.store.forget(record)
        return {"judged": len(self.store.judgments)}


def _handler(server: ReviewServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "ladder-review"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the terminal shows the URL and the saves, not every request

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            key = parse_qs(url.query).get("key", [None])[0]
            if server.api_key is not None and url.path == "/" and key is not None:
                if not key_matches(key, server.api_key):
                    return self._send(HTTPStatus.UNAUTHORIZED, {"error": "wrong key"})
                # The key moves into a cookie and out of the address bar and history.
                self.send_response(HTTPStatus.SEE_OTHER)
                self.send_header("Location", "/")
                self.send_header(
                    "Set-Cookie",
                    f"{_COOKIE}={quote(key, safe='')}; HttpOnly; SameSite=Strict; Path=/",
                )
                self.send_header("Content-Length", "0")
                return self.end_headers()
            if not self._authorised():
                return self._send(HTTPStatus.UNAUTHORIZED, {"error": "open /?key=KEY first"})
            if url.path == "/":
                return self._send(HTTPStatus.OK, PAGE, "text/html; charset=utf-8")
            if url.path == "/api/run":
                return self._send(HTTPStatus.OK, server.state())
            self._send(HTTPStatus.NOT_FOUND, {"error": f"no page {url.path}"})

        def do_POST(self) -> None:
            if not self._authorised():
                return self._send(HTTPStatus.UNAUTHORIZED, {"error": "missing or wrong key"})
            origin = self.headers.get("Origin")
            if origin is not None and origin != f"http://{self.headers.get('Host')}":
                return self._send(HTTPStatus.FORBIDDEN, {"error": "cross-origin write refused"})
            if not (self.headers.get("Content-Type") or "").startswith("application/json"):
                return self._send(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, {"error": "send JSON"})
            action = {"/api/judge": server.judge, "/api/forget": server.forget}.get(self.path)
            if action is None:
                return self._send(HTTPStatus.NOT_FOUND, {"error": f"no action {self.path}"})
            length = int(self.headers.get("Content-Length") or 0)
            if length > _MAX_BODY:
                return self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "too large"})
            try:
                body = json.loads(self.rfile.read(length) or b"null")
                self._send(HTTPStatus.OK, action(body))
            except (ValueError, UnicodeDecodeError) as exc:
                self._send(HTTPStatus.BAD_REQUEST, {"error": str(exc)})

        def _authorised(self) -> bool:
            if server.api_key is None:
                return True
            header = self.headers.get("Authorization") or ""
            scheme, _, token = header.partition(" ")
            if scheme.lower() == "bearer" and key_matches(token.strip(), server.api_key):
                return True
            cookie = SimpleCookie(self.headers.get("Cookie") or "")
            morsel = cookie.get(_COOKIE)
            return morsel is not None and key_matches(unquote(morsel.value), server.api_key)

        def _send(self, status: HTTPStatus, body: Any, kind: str = "application/json") -> None:
            data = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
            raw = data.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(raw)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(raw)

    return Handler
