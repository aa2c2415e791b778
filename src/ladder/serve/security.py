"""Security by default for ``ladder serve``: the API key, the bind address, request limits.

- The key comes from ``LADDER_API_KEY`` or a file (``--api-key-file``), never from the
  command line (where ``ps`` would show it). It is compared with :func:`hmac.compare_digest`,
  in constant time, and never logged.
- Binding to anything but a loopback address without a key is refused.
- Request bodies, prompt lengths and ``max_tokens`` are capped; slow requests time out.
- Every error is an OpenAI-style body, ``{"error": {"message", "type", "param", "code"}}``,
  never a stack trace.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ladder.errors import ConfigError

__all__ = [
    "KEY_ENV",
    "APIError",
    "Limits",
    "check_bind",
    "error_body",
    "is_loopback",
    "key_matches",
    "read_api_key",
]

KEY_ENV = "LADDER_API_KEY"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Limits(BaseModel):
    """Per-request limits. The field descriptions are ``ladder serve --help`` text."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_body_bytes: int = Field(
        1_048_576, ge=1024, description="Largest request body in bytes; larger ones get 413."
    )
    max_prompt_tokens: int = Field(
        4096, ge=1, description="Longest prompt in tokens; longer ones get 400."
    )
    max_tokens: int = Field(
        1024, ge=1, description="Largest max_tokens a request may ask for; more gets 400."
    )
    timeout_s: float = Field(
        120.0, gt=0, description="Seconds a request may take before it is answered 408."
    )


class APIError(Exception):
    """A request the server refuses: answered with ``status`` and an OpenAI error body."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


def read_api_key(api_key_file: Path | None = None) -> str | None:
    """The server's API key: from ``api_key_file`` when given, else ``$LADDER_API_KEY``.

    Raises:
        ConfigError: the file does not exist, cannot be read, or is empty.
    """
    if api_key_file is not None:
        try:
            key = Path(api_key_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ConfigError(
                f"--api-key-file {api_key_file}: cannot read it ({reason}); give a file "
                "holding the key on one line"
            ) from None
        if not key:
            raise ConfigError(
                f"--api-key-file {api_key_file}: the file is empty; put the key in it"
            )
        return key
    return os.environ.get(KEY_ENV, "").strip() or None


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, api_key: str | None) -> None:
    """Refuse to listen beyond this machine without an API key.

    Raises:
        ConfigError: ``host`` is not a loopback address and there is no key.
    """
    if api_key is None and not is_loopback(host):
        raise ConfigError(
            f"--host {host}: refusing to listen on a non-loopback address without an API key; "
            f"set {KEY_ENV} or pass --api-key-file FILE (or bind to 127.0.0.1)"
        )


def key_matches(presented: str | None, expected: str) -> bool:
    """Compare a presented key with the expected one in constant time."""
    if presented is None:
        return False
    return hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8"))


def error_body(
    status: int, message: str, *, kind: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """An OpenAI-style error body for HTTP ``status``."""
    if kind is None:
        kind = {401: "authentication_error", 404: "not_found_error", 408: "timeout_error"}.get(
            status, "invalid_request_error" if status < 500 else "server_error"
        )
    return {"error": {"message": message, "type": kind, "param": param, "code": status}}


class GuardMiddleware:
    """ASGI middleware: the API key (all routes but ``/health``) and the body-size cap.

    It runs before FastAPI reads the body, so an oversize or unauthenticated request costs
    no parsing. A body without ``Content-Length`` (chunked) is read here, up to the limit,
    and handed on whole.
    """

    def __init__(self, app: ASGIApp, *, api_key: str | None, max_body_bytes: int) -> None:
        self.app = app
        self.api_key = api_key
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v for k, v in scope.get("headers", [])}
        if self.api_key is not None and scope.get("path") != "/health":
            presented = _bearer(headers.get("authorization"))
            if not key_matches(presented, self.api_key):
                # Unlike OpenAI, the presented key is not quoted back: it could be a real
                # key meant for another server.
                await _send_json(send, 401, error_body(401, "missing or incorrect API key"))
                return
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await _send_json(send, 413, _too_large(self.max_body_bytes))
            return
        if declared is None and scope.get("method") in ("POST", "PUT", "PATCH"):
            body = await _read_capped(receive, self.max_body_bytes)
            if body is None:
                await _send_json(send, 413, _too_large(self.max_body_bytes))
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send)


async def _read_capped(receive: Receive, limit: int) -> bytes | None:
    """Read a body sent without Content-Length (chunked); None once it passes ``limit``."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(parts)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the already-read body once, then the real channel."""
    sent = False

    async def replayed() -> MutableMapping[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def _too_large(limit: int) -> dict[str, Any]:
    return error_body(413, f"request body larger than {limit} bytes; send a smaller request")


def _bearer(value: bytes | None) -> str | None:
    if value is None:
        return None
    text = value.decode("latin-1")
    scheme, _, token = text.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


async def _send_json(send: Send, status: int, payload: dict[str, Any]) -> None:
    import json

    data = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
