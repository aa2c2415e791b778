"""A small, real HTTP server that speaks the OpenAI protocol, for tests.

Standard library only (``http.server``), so backend tests need neither the ``serve`` extra
nor a network. It listens on a free port of 127.0.0.1 in a background thread.

Models (all deterministic):

- ``echo``: answers ``"You said: " + prompt`` (the last message's content for chat). Tokens
  are whitespace-led pieces (:func:`tokenize`); with ``temperature > 0`` the answer's words
  are shuffled by ``random.Random(seed)``. Supports ``max_tokens`` (finish ``length``),
  ``stop`` (at most 4, like OpenAI), ``echo`` + ``logprobs`` with ``text_offset`` and fake
  logprobs (:func:`fake_logprob`), ``stream`` (SSE ending in ``data: [DONE]``) and ``usage``.
- ``nologprobs``: like ``echo`` but ignores ``logprobs`` (returns ``null``), as servers do
  that do not compute prompt logprobs.
- ``chat-only``: ``/v1/completions`` answers 404, as OpenAI does for chat models.
- ``json-object-only``: like ``echo``, but a ``response_format`` of type ``json_schema``
  answers 400 (``json_object`` is accepted), as older servers do.
- ``no-response-format``: like ``echo``, but any ``response_format`` answers 400.

Every other model accepts ``response_format`` without enforcing it: the reply is the
``responder``'s text (or the ``echo`` reply), so tests script what a model answers.

Controls: :attr:`OpenAITestServer.api_key` (require this bearer key, else 401),
:meth:`~OpenAITestServer.fail_next` (the next N requests fail with a status, optionally with
``Retry-After``), :meth:`~OpenAITestServer.delay_next` (the next N requests stall),
:meth:`~OpenAITestServer.break_next_stream` (an error event mid-stream), the
``tokenize`` flag (vLLM's ``POST /tokenize``), :attr:`~OpenAITestServer.responder` (a
function of the request body that returns the full reply text, or ``None`` for the ``echo``
reply; ``max_tokens`` and ``stop`` still apply), and :attr:`~OpenAITestServer.requests`
(every request received, failed ones included).
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

MODELS = ("echo", "nologprobs", "chat-only", "json-object-only", "no-response-format")
MAX_STOPS = 4
_TOKEN = re.compile(r"\s*\S+|\s+")


def tokenize(text: str) -> list[str]:
    """The fake tokenizer: whitespace-led pieces whose concatenation is ``text``."""
    return _TOKEN.findall(text)


def fake_logprob(token: str) -> float:
    """The logprob the server reports for ``token``: longer words are less likely."""
    return -round(0.25 + 0.1 * len(token.strip()), 6)


def reply_for(prompt_text: str, temperature: float = 0.0, seed: int | None = None) -> str:
    """The ``echo`` model's full answer before ``max_tokens`` and ``stop`` apply."""
    words = f"You said: {prompt_text}".split()
    if temperature > 0:
        random.Random(seed).shuffle(words)
    return " ".join(words)


@dataclass
class Request:
    """One request as received."""

    method: str
    path: str
    query: dict[str, str]
    body: dict[str, Any]


@dataclass
class _Fault:
    status: int
    retry_after: str | None
    retry_after_ms: str | None
    delay_s: float = 0.0


@dataclass
class OpenAITestServer:
    """The server and its failure controls; see the module docstring."""

    api_key: str | None = None
    tokenize: bool = True
    responder: Callable[[dict[str, Any]], str | None] | None = None
    requests: list[Request] = field(default_factory=list)
    _faults: list[_Fault] = field(default_factory=list)
    _stream_errors: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _httpd: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``."""
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def fail_next(
        self,
        count: int,
        status: int = 503,
        retry_after: str | None = None,
        retry_after_ms: str | None = None,
    ) -> None:
        """Make the next ``count`` requests answer ``status`` (with the given headers)."""
        with self._lock:
            self._faults += [_Fault(status, retry_after, retry_after_ms) for _ in range(count)]

    def delay_next(self, count: int, seconds: float) -> None:
        """Make the next ``count`` requests wait ``seconds`` before answering normally."""
        with self._lock:
            self._faults += [_Fault(0, None, None, seconds) for _ in range(count)]

    def break_next_stream(self, message: str = "engine died") -> None:
        """Make the next stream send one piece, then an error event (as vLLM does)."""
        with self._lock:
            self._stream_errors.append(message)

    def count(self, path: str | None = None) -> int:
        """Requests received so far, optionally only those to ``path`` (``/v1/completions``)."""
        with self._lock:
            return sum(1 for r in self.requests if path is None or r.path == path)

    def reset(self) -> None:
        """Forget requests and pending faults; no key required; /tokenize on."""
        with self._lock:
            self.requests.clear()
            self._faults.clear()
            self._stream_errors.clear()
        self.api_key, self.tokenize, self.responder = None, True, None

    def start(self) -> OpenAITestServer:
        """Listen on a free port in a daemon thread."""
        handler = type("Handler", (_Handler,), {"server_state": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def _stream_error(self) -> str | None:
        with self._lock:
            return self._stream_errors.pop(0) if self._stream_errors else None

    def _record(self, request: Request) -> _Fault | None:
        with self._lock:
            self.requests.append(request)
            return self._faults.pop(0) if self._faults else None


class _Handler(BaseHTTPRequestHandler):
    server_state: OpenAITestServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else {}
        state = self.server_state
        fault = state._record(Request(method, url.path, dict(parse_qsl(url.query)), body))
        try:
            if fault is not None and fault.delay_s:
                time.sleep(fault.delay_s)
            elif fault is not None:
                headers = {"retry-after": fault.retry_after, "retry-after-ms": fault.retry_after_ms}
                self._error(fault.status, f"injected failure {fault.status}", headers)
                return
            presented = self.headers.get("Authorization", "").removeprefix("Bearer ")
            if state.api_key is not None and presented != state.api_key:
                # Real servers quote the key they got; the client must not pass that on.
                self._error(401, f"Incorrect API key provided: {presented}.")
                return
            self._route(method, url.path, body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
            pass

    def _route(self, method: str, path: str, body: dict[str, Any]) -> None:
        if method == "GET" and path == "/v1/models":
            data = [{"id": m, "object": "model", "owned_by": "tests"} for m in MODELS]
            self._json(200, {"object": "list", "data": data})
        elif method == "POST" and path == "/tokenize" and self.server_state.tokenize:
            ids = list(range(len(tokenize(body.get("prompt", "")))))
            self._json(200, {"count": len(ids), "tokens": ids, "max_model_len": 2048})
        elif method == "POST" and path in ("/v1/completions", "/v1/chat/completions"):
            model = body.get("model")
            stops = body.get("stop") or []
            stops = [stops] if isinstance(stops, str) else stops
            if model not in MODELS:
                self._error(404, f"The model `{model}` does not exist.")
            elif len(stops) > MAX_STOPS:
                self._error(400, f"stop: at most {MAX_STOPS} sequences, got {len(stops)}")
            elif (refusal := _refuses_format(model, body.get("response_format"))) is not None:
                self._error(400, refusal)
            elif path == "/v1/chat/completions":
                self._chat(body, stops)
            elif model == "chat-only":
                self._error(404, "This is a chat model and not supported in v1/completions.")
            else:
                self._completion(body, stops)
        else:
            self._error(404, f"no route {method} {path}")

    def _chat(self, body: dict[str, Any], stops: list[str]) -> None:
        messages = body.get("messages") or []
        prompt = messages[-1]["content"] if messages else ""
        text, finish, made = _decode(
            prompt, body, stops, default_max=None, reply=self._scripted(body)
        )
        usage = _usage(len(tokenize(" ".join(m["content"] for m in messages))), made)
        if body.get("stream"):
            first = {"role": "assistant", "content": ""}
            deltas = [first, *({"content": t} for t in tokenize(text)), {}]
            self._sse(
                "chat.completion.chunk",
                body,
                [
                    {
                        "index": 0,
                        "delta": d,
                        "finish_reason": finish if i == len(deltas) - 1 else None,
                    }
                    for i, d in enumerate(deltas)
                ],
            )
            return
        message = {"role": "assistant", "content": text}
        choice = {"index": 0, "message": message, "finish_reason": finish}
        self._json(200, _envelope("chat.completion", body, [choice], usage))

    def _completion(self, body: dict[str, Any], stops: list[str]) -> None:
        prompt = str(body.get("prompt", ""))
        text, finish, made = _decode(
            prompt, body, stops, default_max=16, reply=self._scripted(body)
        )
        usage = _usage(len(tokenize(prompt)), made)
        if body.get("stream"):
            pieces = [*tokenize(text), ""]
            self._sse(
                "text_completion",
                body,
                [
                    {
                        "index": 0,
                        "text": p,
                        "finish_reason": finish if i == len(pieces) - 1 else None,
                    }
                    for i, p in enumerate(pieces)
                ],
            )
            return
        echo = bool(body.get("echo"))
        logprobs = None
        if body.get("logprobs") is not None and body.get("model") == "echo":
            logprobs = _logprobs(prompt if echo else "", text)
        choice = {
            "index": 0,
            "text": prompt + text if echo else text,
            "logprobs": logprobs,
            "finish_reason": finish,
        }
        self._json(200, _envelope("text_completion", body, [choice], usage))

    def _scripted(self, body: dict[str, Any]) -> str | None:
        responder = self.server_state.responder
        return None if responder is None else responder(body)

    def _sse(self, kind: str, body: dict[str, Any], choices: list[dict[str, Any]]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        broken = self.server_state._stream_error()
        for i, choice in enumerate(choices):
            chunk = _envelope(kind, body, [choice], None)
            if broken is not None and i == 2:
                chunk = {"error": {"message": broken, "type": "internal_error", "code": 500}}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
            if broken is not None and i == 2:
                return
        self.wfile.write(b"data: [DONE]\n\n")

    def _json(
        self, status: int, payload: dict[str, Any], headers: dict[str, str | None] | None = None
    ) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            if value is not None:
                self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(
        self, status: int, message: str, headers: dict[str, str | None] | None = None
    ) -> None:
        error = {"message": message, "type": "invalid_request_error", "code": status}
        self._json(status, {"error": error}, headers)


def _decode(
    prompt: str,
    body: dict[str, Any],
    stops: list[str],
    default_max: int | None,
    reply: str | None = None,
) -> tuple[str, str, int]:
    """Generate token by token: (text, finish reason, tokens generated)."""
    if reply is None:
        reply = reply_for(prompt, float(body.get("temperature", 1.0)), body.get("seed"))
    limit = body.get("max_tokens") or body.get("max_completion_tokens") or default_max
    text, made = "", 0
    for piece in tokenize(reply):
        if limit is not None and made >= limit:
            return text, "length", made
        text += piece
        made += 1
        hits = [i for s in stops if s and (i := text.find(s)) >= 0]
        if hits:
            return text[: min(hits)], "stop", made
    return text, "stop", made


def _refuses_format(model: str, response_format: Any) -> str | None:
    """The 400 message a model gives for ``response_format``, or None when it accepts it."""
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if model == "no-response-format":
        return "response_format is not supported by this server"
    if model == "json-object-only" and kind == "json_schema":
        return f"response_format type {kind!r} is not supported; use 'json_object'"
    return None


def _logprobs(prompt: str, generated: str) -> dict[str, Any]:
    tokens = tokenize(prompt) + tokenize(generated)
    offsets, at = [], 0
    for token in tokens:
        offsets.append(at)
        at += len(token)
    # The text's very first token has no context, so no logprob (as in the OpenAI API).
    scores = [None if i == 0 and prompt else fake_logprob(t) for i, t in enumerate(tokens)]
    top = [None if s is None else {t: s} for t, s in zip(tokens, scores, strict=True)]
    return {"tokens": tokens, "token_logprobs": scores, "text_offset": offsets, "top_logprobs": top}


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _envelope(
    kind: str, body: dict[str, Any], choices: list[dict[str, Any]], usage: dict[str, int] | None
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": "cmpl-test",
        "object": kind,
        "created": 0,
        "model": body.get("model"),
        "choices": choices,
    }
    if usage is not None:
        payload["usage"] = usage
    return payload
