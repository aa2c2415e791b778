"""The HTTP side of the ``openai:`` backend: one endpoint's client, retries and errors.

:class:`OpenAITransport` builds the ``openai`` SDK client for a base URL (the query travels
as a default query, the key comes from exactly one environment variable), runs each request
with ladder's retries (:mod:`ladder.models._retry`), and turns every SDK failure into a
one-line :class:`~ladder.errors.EndpointError` or :class:`~ladder.errors.UnsupportedError`
with the API key scrubbed out. What a request says and how its answer is read is
:mod:`ladder.models.openai_api`'s business.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import openai

from ladder.errors import EndpointError, LadderError, ModelLoadError, UnsupportedError
from ladder.models._retry import (
    STREAM_ERRORS,
    RetryPolicy,
    connection_reason,
    is_transient,
    requested_wait,
    retry_call,
    server_message,
)
from ladder.track import MIN_SECRET_CHARS

__all__ = ["OpenAITransport"]

# Named for the backend, as before this module was split out of it, so logging set-ups
# that name ladder.models.openai_api still see the retries.
logger = logging.getLogger("ladder.models.openai_api")
T = TypeVar("T")

_NO_KEY = "EMPTY"  # vLLM's documented placeholder; the SDK refuses to start without a key
_NOT_OFFERED = frozenset({400, 404, 405, 422, 501})  # "this server does not do that"


class OpenAITransport:
    """One OpenAI-compatible endpoint: the SDK client, retries, and one-line errors.

    The SDK's own retries are off so the behaviour is ours and tested.

    Attributes:
        client: the ``openai.OpenAI`` client requests are made with.
        url: the base URL as shown in messages (no ``user:password@``, no query).
        host: ``host[:port]`` of the endpoint (IPv6 in brackets).
        policy: the retry policy.
    """

    def __init__(
        self,
        model: str,
        base_url: str,
        *,
        api_key_env: str,
        timeout: float,
        policy: RetryPolicy,
    ) -> None:
        """Build the client for ``base_url``.

        Args:
            model: the served model's name (for messages).
            base_url: the endpoint, e.g. ``http://127.0.0.1:8000/v1``; a query is kept.
            api_key_env: the one environment variable the key is read from.
            timeout: seconds to wait for one request.
            policy: retries on transient failures.

        Raises:
            ModelLoadError: ``base_url`` is not an http(s) URL.
        """
        self._model = model
        self._api_key_env = api_key_env
        self._timeout = timeout
        self.policy = policy
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ModelLoadError(f"openai:{model}: {base_url!r} is not an http(s) URL")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname  # IPv6
        self.host = host + (f":{parts.port}" if parts.port else "")
        self.url = urlunsplit((parts.scheme, self.host, parts.path.rstrip("/"), "", ""))
        # The SDK appends request paths to the base URL's raw path, after any '?', so a query
        # (Azure's api-version) has to travel as default_query.
        query = dict(parse_qsl(parts.query)) or None
        key = os.environ.get(api_key_env, "")
        self._key_set = bool(key)
        self.client = openai.OpenAI(
            base_url=urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")),
            api_key=key or _NO_KEY,
            timeout=timeout,
            max_retries=0,
            default_query=query,
        )

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self.client.close()

    def call(self, call: Callable[[], T], unsupported: str | None = None) -> T:
        """Run one request with retries; map SDK errors to one-line ladder errors.

        Args:
            call: the request; called with no arguments, once per attempt.
            unsupported: when given, an answer meaning "not offered" (HTTP 400, 404, 405,
                422, 501) raises :class:`UnsupportedError` with this text.

        Raises:
            EndpointError: the request failed (after retries where transient).
            UnsupportedError: see ``unsupported``.
        """
        try:
            return retry_call(
                call,
                self.policy,
                should_retry=is_transient,
                retry_after=requested_wait,
                on_retry=self._log_retry,
            )
        except openai.APIError as exc:
            error = self._ladder_error(exc, unsupported)
        # Raised outside the handler so that no __context__ links to the SDK's exception,
        # whose text may quote the API key back (OpenAI's 401 does).
        raise error

    def guarded(self, pieces: Iterable[str]) -> Iterator[str]:
        """Pass a stream's non-empty pieces through; a broken stream is one-line error.

        Raises:
            EndpointError: reading the stream failed after it was opened.
        """
        try:
            yield from (p for p in pieces if p)
            return
        except STREAM_ERRORS as exc:
            reason = self.scrub(getattr(exc, "message", None) or str(exc) or type(exc).__name__)
        # Raised outside the handler: no __context__ links to text that may quote the key.
        raise EndpointError(f"{self.url}: the stream broke off: {reason}")

    def scrub(self, text: str) -> str:
        """``text`` on one line, at most 300 characters, with the API key masked."""
        key = self.client.api_key
        # A key shorter than a real one ("x" in a local setup) is not masked: replacing it
        # would garble words ("does not e***ist") and hide nothing.
        if self._key_set and key and len(key) >= MIN_SECRET_CHARS:
            text = text.replace(key, "***")
        return " ".join(text.split())[:300]

    def _log_retry(self, exc: Exception, retry: int, delay: float) -> None:
        if isinstance(exc, openai.APITimeoutError):
            reason = "no answer in time"
        elif isinstance(exc, openai.APIConnectionError):
            reason = connection_reason(exc)
        else:
            reason = f"HTTP {getattr(exc, 'status_code', '?')}"
        total = self.policy.max_retries
        logger.warning("%s: %s; retry %d of %d in %.2f s", self.url, reason, retry, total, delay)

    def _ladder_error(self, exc: openai.APIError, unsupported: str | None) -> LadderError:
        url, attempts, env = self.url, self.policy.attempts, self._api_key_env
        if isinstance(exc, openai.APITimeoutError):
            return EndpointError(
                f"{url} did not answer within {self._timeout:g} s ({attempts} attempts) "
                "— raise the timeout option or check the server's load"
            )
        if isinstance(exc, openai.APIConnectionError):
            return EndpointError(
                f"cannot reach {url}: {connection_reason(exc)} — is the server running?"
            )
        if not isinstance(exc, openai.APIStatusError):
            return EndpointError(f"{url} answered with an error: {self.scrub(exc.message)}")
        status, said = exc.status_code, self.scrub(server_message(exc))
        if status in (401, 403):
            unset = "" if self._key_set else f" (${env} is not set)"
            return EndpointError(
                f"{url} rejected the API key from ${env}{unset} (HTTP {status}) "
                f"— set {env} to a valid key, or name another variable with api_key_env"
            )
        if unsupported is not None and status in _NOT_OFFERED:
            return UnsupportedError(f"{unsupported} (HTTP {status}: {said})")
        if status == 404:
            return EndpointError(
                f"{url}: HTTP 404 for model {self._model!r}: {said} — check the model name "
                f"(GET {url}/models lists the served ones)"
            )
        if is_transient(exc):
            return EndpointError(
                f"{url} failed with HTTP {status} after {attempts} attempts: {said}"
            )
        return EndpointError(f"{url} refused the request (HTTP {status}): {said}")
